//! Layers as data: a layer kind's name and configuration ([`LayerSpec`]), the trait that
//! turns them into a layer ([`LayerKind`]), and the [`Registry`] of kinds a model is built
//! and reloaded from.
//!
//! Built-in layers and users' layers go through the same door: implement [`LayerKind`] for
//! a type, register it, and a [`crate::NormalizingFlow`] holding it can be rebuilt from its
//! stored architecture (checkpoints store each layer as `{"type": NAME, ...config}`).
//!
//! ```
//! use flow_core::{Backend, Cpu, ParamStore, Var};
//! use flow_layers::{BuildContext, Flow, LayerKind, LayerSpec, NormalizingFlow, Registry};
//! use serde::{Deserialize, Serialize};
//!
//! /// `x = -z`: a layer of one's own.
//! #[derive(Debug)]
//! struct Negate {
//!     dim: usize,
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! struct NegateConfig {}
//!
//! impl<B: Backend> Flow<B> for Negate {
//!     fn dim(&self) -> usize {
//!         self.dim
//!     }
//!     fn forward(&self, _: &ParamStore<B>, z: &Var<B>, _: Option<&Var<B>>) -> flow_layers::Result<(Var<B>, Var<B>)> {
//!         Ok((z.neg()?, z.sum(flow_core::Axis::Cols)?.mul_scalar(0.0)?))
//!     }
//!     fn inverse(&self, p: &ParamStore<B>, x: &Var<B>, c: Option<&Var<B>>) -> flow_layers::Result<(Var<B>, Var<B>)> {
//!         self.forward(p, x, c)
//!     }
//!     fn spec(&self) -> LayerSpec {
//!         LayerSpec::of::<Negate>(&NegateConfig {})
//!     }
//! }
//!
//! impl LayerKind for Negate {
//!     const NAME: &'static str = "negate";
//!     type Config = NegateConfig;
//!     fn build<B: Backend>(_: &NegateConfig, cx: &mut BuildContext<'_, B>) -> flow_layers::Result<Box<dyn Flow<B>>> {
//!         Ok(Box::new(Negate { dim: cx.dim }))
//!     }
//! }
//!
//! let cpu = Cpu::<f64>::new();
//! let registry = Registry::builtin().with::<Negate>()?;
//! let model = NormalizingFlow::builder(2).layer::<Negate>(NegateConfig {}).build(&cpu, 0)?;
//! // The stored architecture names the layer; the registry rebuilds it.
//! let again = NormalizingFlow::from_spec(&registry, &cpu, model.spec().clone(), 0)?;
//! assert_eq!(again.spec(), model.spec());
//! # Ok::<(), flow_layers::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::flow::Flow;
use flow_core::{Backend, FlowRng, ParamStore};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// How a layer's parameters start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Init {
    /// The layer starts as the identity where it can (normflows' examples zero the last layer
    /// of every conditioner; ActNorm starts at zero, to be initialised from data).
    Identity,
    /// Every parameter drawn at random (PyTorch's `nn.Linear` initialisation throughout, as
    /// zuko; what tests of a layer's algebra want).
    Random,
}

/// What a layer's constructor gets: the model's parameter store, the name prefix of its
/// parameters, the model's width and context width, and the random stream of the build.
#[derive(Debug)]
pub struct BuildContext<'a, B: Backend> {
    pub backend: &'a B,
    /// The model's parameters: a layer adds its own and keeps their handles.
    pub params: &'a mut ParamStore<B>,
    /// The prefix of the layer's parameter names (`flows.{k}` in a model, normflows' names).
    pub prefix: String,
    /// The number of features the layer maps.
    pub dim: usize,
    /// The number of context features a conditioner may read (0: unconditional).
    pub context: usize,
    pub init: Init,
    /// The build's random stream, shared by the layers in order.
    pub rng: &'a mut FlowRng,
}

impl<'a, B: Backend> BuildContext<'a, B> {
    /// A context for building one layer on its own (tests, custom models).
    pub fn new(
        backend: &'a B,
        params: &'a mut ParamStore<B>,
        prefix: impl Into<String>,
        dim: usize,
        rng: &'a mut FlowRng,
    ) -> Self {
        BuildContext {
            backend,
            params,
            prefix: prefix.into(),
            dim,
            context: 0,
            init: Init::Identity,
            rng,
        }
    }

    /// The same context with `context` context features.
    pub fn with_context(mut self, context: usize) -> Self {
        self.context = context;
        self
    }

    /// The same context with another initialisation.
    pub fn with_init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// `{prefix}.{suffix}` (`suffix` alone under an empty prefix): the full name of one of
    /// the layer's parameters.
    pub fn name(&self, suffix: &str) -> String {
        if self.prefix.is_empty() {
            suffix.to_string()
        } else {
            format!("{}.{suffix}", self.prefix)
        }
    }

    /// Whether the layer should start as the identity ([`Init::Identity`]).
    pub fn init_zeros(&self) -> bool {
        self.init == Init::Identity
    }
}

/// A kind of layer that can be rebuilt from a configuration: the entry a [`Registry`] holds.
///
/// Implement it for a layer (or a marker type) to store the layer in checkpoints and rebuild
/// it: the layer's [`Flow::spec`] returns [`LayerSpec::of::<Self>`](LayerSpec::of) of its
/// configuration, and [`LayerKind::build`] makes the layer from it.
pub trait LayerKind: 'static {
    /// The name stored in architectures, unique in a registry (`"affine_coupling"`).
    const NAME: &'static str;
    /// The layer's configuration: stored as JSON fields beside `"type"`, so a struct with
    /// named fields (none of them called `type`).
    type Config: Serialize + DeserializeOwned;

    /// Builds the layer, adding its parameters to `cx.params` under `cx.prefix`.
    fn build<B: Backend>(
        config: &Self::Config,
        cx: &mut BuildContext<'_, B>,
    ) -> Result<Box<dyn Flow<B>>>;

    /// A lower bound of the layer's scalar parameters in a model of `dim` features reading
    /// `context` more, computed without building it: a checkpoint whose file holds fewer
    /// values is refused before anything is allocated. `None` when it overflows `usize`. The
    /// default, 0, skips that check.
    fn num_scalars(config: &Self::Config, dim: usize, context: usize) -> Option<usize> {
        let _ = (config, dim, context);
        Some(0)
    }
}

/// The configuration of a layer kind that has none (stored as no fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoConfig {}

/// One layer of an architecture: its kind's name and its configuration. Serialised as one
/// JSON object, `{"type": "affine_coupling", "hidden": [64, 64], ...}`.
#[derive(Clone, PartialEq)]
pub struct LayerSpec {
    kind: String,
    config: Map<String, Value>,
}

impl LayerSpec {
    /// The spec of a layer of kind `K` with `config`.
    pub fn of<K: LayerKind>(config: &K::Config) -> Self {
        let config = match serde_json::to_value(config) {
            Ok(Value::Object(map)) => map,
            // Not a struct with named fields: stored under one key.
            Ok(other) => Map::from_iter([("config".to_string(), other)]),
            Err(e) => panic!(
                "the configuration of layer kind {} does not serialise: {e}",
                K::NAME
            ),
        };
        LayerSpec {
            kind: K::NAME.to_string(),
            config,
        }
    }

    /// The kind's name, as registered.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Whether the spec is of kind `K`.
    pub fn is<K: LayerKind>(&self) -> bool {
        self.kind == K::NAME
    }

    /// The configuration, read as kind `K`'s (an error for another kind or fields that do
    /// not fit).
    pub fn config<K: LayerKind>(&self) -> Result<K::Config> {
        if self.kind != K::NAME {
            return Err(Error::Config(format!(
                "a `{}` layer read as a `{}`",
                self.kind,
                K::NAME
            )));
        }
        let value = match self.config.get("config") {
            Some(inner) if self.config.len() == 1 => serde_json::from_value(inner.clone())
                .or_else(|_| serde_json::from_value(Value::Object(self.config.clone()))),
            _ => serde_json::from_value(Value::Object(self.config.clone())),
        };
        value.map_err(|e| Error::Config(format!("layer `{}`: {e}", self.kind)))
    }

    /// The configuration's fields as stored.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.config
    }
}

impl fmt::Debug for LayerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.kind, Value::Object(self.config.clone()))
    }
}

impl Serialize for LayerSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.config.len() + 1))?;
        map.serialize_entry("type", &self.kind)?;
        for (k, v) in &self.config {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for LayerSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let mut config = Map::deserialize(deserializer)?;
        match config.remove("type") {
            Some(Value::String(kind)) => Ok(LayerSpec { kind, config }),
            _ => Err(serde::de::Error::custom(
                "a layer needs a \"type\" naming its kind",
            )),
        }
    }
}

type BuildFn<B> = fn(&LayerSpec, &mut BuildContext<'_, B>) -> Result<Box<dyn Flow<B>>>;
type ScalarsFn = fn(&LayerSpec, usize, usize) -> Result<Option<usize>>;

#[derive(Clone, Copy)]
struct Entry<B: Backend> {
    build: BuildFn<B>,
    num_scalars: ScalarsFn,
}

/// The layer kinds a model can be built from, by name.
///
/// [`Registry::builtin`] holds every layer of this crate; add one's own with
/// [`Registry::register`] (or [`Registry::with`]) and pass the registry to
/// [`crate::NormalizingFlow::from_spec`] (and the checkpoint loaders of `flow-train`).
pub struct Registry<B: Backend> {
    entries: BTreeMap<String, Entry<B>>,
}

impl<B: Backend> Clone for Registry<B> {
    fn clone(&self) -> Self {
        Registry {
            entries: self.entries.clone(),
        }
    }
}

impl<B: Backend> fmt::Debug for Registry<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.entries.keys()).finish()
    }
}

impl<B: Backend> Default for Registry<B> {
    fn default() -> Self {
        Self::builtin()
    }
}

fn build_entry<B: Backend, K: LayerKind>(
    spec: &LayerSpec,
    cx: &mut BuildContext<'_, B>,
) -> Result<Box<dyn Flow<B>>> {
    K::build(&spec.config::<K>()?, cx)
}

fn scalars_entry<K: LayerKind>(
    spec: &LayerSpec,
    dim: usize,
    context: usize,
) -> Result<Option<usize>> {
    Ok(K::num_scalars(&spec.config::<K>()?, dim, context))
}

impl<B: Backend> Registry<B> {
    /// A registry without any kind.
    pub fn empty() -> Self {
        Registry {
            entries: BTreeMap::new(),
        }
    }

    /// Every layer kind of this crate.
    pub fn builtin() -> Self {
        let mut registry = Self::empty();
        crate::builtin::register_all(&mut registry)
            .expect("the built-in layer kinds have distinct names");
        registry
    }

    /// Adds kind `K`; an error if another kind already has its name.
    pub fn register<K: LayerKind>(&mut self) -> Result<&mut Self> {
        if self.entries.contains_key(K::NAME) {
            return Err(Error::Config(format!(
                "a layer kind named `{}` is already registered",
                K::NAME
            )));
        }
        self.entries.insert(
            K::NAME.to_string(),
            Entry {
                build: build_entry::<B, K>,
                num_scalars: scalars_entry::<K>,
            },
        );
        Ok(self)
    }

    /// The registry with kind `K` added.
    pub fn with<K: LayerKind>(mut self) -> Result<Self> {
        self.register::<K>()?;
        Ok(self)
    }

    /// Whether a kind of this name is registered.
    pub fn contains(&self, kind: &str) -> bool {
        self.entries.contains_key(kind)
    }

    /// The registered kinds' names.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    fn entry(&self, kind: &str) -> Result<&Entry<B>> {
        self.entries.get(kind).ok_or_else(|| {
            Error::Config(format!(
                "unknown layer kind `{kind}` (registered: {}); register a user-defined layer \
                 with Registry::register",
                self.entries
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// Builds the layer `spec` describes.
    pub fn build(
        &self,
        spec: &LayerSpec,
        cx: &mut BuildContext<'_, B>,
    ) -> Result<Box<dyn Flow<B>>> {
        (self.entry(&spec.kind)?.build)(spec, cx)
    }

    /// [`LayerKind::num_scalars`] of `spec`'s kind.
    pub fn num_scalars(
        &self,
        spec: &LayerSpec,
        dim: usize,
        context: usize,
    ) -> Result<Option<usize>> {
        (self.entry(&spec.kind)?.num_scalars)(spec, dim, context)
    }
}

/// Weights and biases of a conditioner MLP `input + context -> hidden... -> outputs`
/// (`None` in, or an overflow: `None`), for [`LayerKind::num_scalars`].
pub(crate) fn conditioner_scalars(
    input: usize,
    context: usize,
    hidden: &[usize],
    outputs: Option<usize>,
) -> Option<usize> {
    let sizes = conditioner_sizes(input, context, hidden, outputs)?;
    sizes.windows(2).try_fold(0usize, |n, w| {
        n.checked_add(w[0].checked_mul(w[1])?.checked_add(w[1])?)
    })
}

/// The sizes of a conditioner MLP: `input + context -> hidden... -> output`; `None` on
/// overflow.
pub(crate) fn conditioner_sizes(
    input: usize,
    context: usize,
    hidden: &[usize],
    output: Option<usize>,
) -> Option<Vec<usize>> {
    let mut sizes = vec![input.checked_add(context)?];
    sizes.extend_from_slice(hidden);
    sizes.push(output?);
    Some(sizes)
}
