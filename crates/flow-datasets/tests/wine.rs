//! The red wine-quality table, checked against values computed independently from the CSV
//! (`data/winequality-red.csv.gz`, as linfa-datasets 0.8.1 ships it, read with Python's csv
//! module).

use flow_datasets::images::Part;
use flow_datasets::real::{load_real, real_info, RealData};
use flow_datasets::tabular::{dequantize, integer_columns};
use flow_datasets::wine::{wine_quality, wine_quality_scores, WINE_COLUMNS, WINE_ROWS};

const NAMES: [&str; 11] = [
    "fixed acidity",
    "volatile acidity",
    "citric acid",
    "residual sugar",
    "chlorides",
    "free sulfur dioxide",
    "total sulfur dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
];

/// Column means of the CSV, computed with Python (`sum(col) / len(col)` over floats).
const MEANS: [f64; 11] = [
    8.319637273295838,
    0.5278205128205131,
    0.2709756097560964,
    2.5388055034396517,
    0.08746654158849257,
    15.874921826141339,
    46.46779237023139,
    0.9967466791744831,
    3.311113195747343,
    0.6581488430268921,
    10.422983114446502,
];

#[test]
fn shape_names_and_known_rows() {
    let wine = wine_quality().unwrap();
    assert_eq!((wine.rows(), wine.cols()), (1599, 11));
    assert_eq!(WINE_ROWS, 1599);
    assert_eq!(wine.columns(), NAMES);
    assert_eq!(WINE_COLUMNS, NAMES);
    // CSV line 2: 7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,5 (the 5 is the score).
    assert_eq!(
        wine.row(0),
        &[7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4]
    );
    assert_eq!(
        wine.row(1),
        &[7.8, 0.88, 0.0, 2.6, 0.098, 25.0, 67.0, 0.9968, 3.2, 0.68, 9.8]
    );
    // The last line: 6,0.31,0.47,3.6,0.067,18,42,0.99549,3.39,0.66,11,6.
    assert_eq!(
        wine.row(1598),
        &[6.0, 0.31, 0.47, 3.6, 0.067, 18.0, 42.0, 0.99549, 3.39, 0.66, 11.0]
    );
}

#[test]
fn column_means_match_the_csv() {
    let wine = wine_quality().unwrap();
    for (j, expected) in MEANS.iter().enumerate() {
        let col = wine.column(j);
        let mean = col.iter().sum::<f64>() / col.len() as f64;
        assert!(
            (mean - expected).abs() <= 1e-12 * expected.abs(),
            "{}: mean {mean}, expected {expected}",
            NAMES[j]
        );
    }
}

#[test]
fn no_column_is_integer_valued() {
    let mut wine = wine_quality().unwrap();
    assert_eq!(integer_columns(&wine), Vec::<usize>::new());
    // The sulfur dioxide columns are whole numbers but for a few halves.
    let free = wine.column(5);
    let halves: Vec<(usize, f64)> = free
        .iter()
        .enumerate()
        .filter(|(_, v)| v.fract() != 0.0)
        .map(|(i, &v)| (i + 1, v))
        .collect();
    assert_eq!(
        halves,
        [(355, 40.5), (777, 5.5), (1080, 37.5), (1082, 37.5)]
    );
    let total_halves = wine.column(6).iter().filter(|v| v.fract() != 0.0).count();
    assert_eq!(total_halves, 2);
    let err = dequantize(&mut wine, &[5], &mut flow_core::rng(0)).unwrap_err();
    assert!(err.to_string().contains("free sulfur dioxide"), "{err}");
}

#[test]
fn quality_scores() {
    let scores = wine_quality_scores().unwrap();
    assert_eq!(scores.len(), 1599);
    assert_eq!(&scores[..2], &[5, 5]);
    let mut counts = [0usize; 9];
    for &s in &scores {
        counts[usize::from(s)] += 1;
    }
    assert_eq!(counts, [0, 0, 0, 10, 53, 681, 638, 199, 18]);
}

#[test]
fn registry_entry() {
    let info = real_info("wine-quality").unwrap();
    assert_eq!(
        (info.rows, info.dim, info.image, info.needs),
        (1599, 11, None, None)
    );
    assert!(info.description.contains("wine"));
    match load_real("wine-quality", Part::Train).unwrap() {
        RealData::Table(t) => assert_eq!(t, wine_quality().unwrap()),
        other => panic!("expected a table, got {other:?}"),
    }
    let msg = load_real("wine-quality", Part::Test)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("no official test part") && msg.contains("split"),
        "{msg}"
    );
}
