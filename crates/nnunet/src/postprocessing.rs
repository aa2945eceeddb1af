//! nnU-Net's postprocessing: the `postprocessing.pkl` (or `.json`) that
//! `nnUNetv2_find_best_configuration` / `nnUNetv2_determine_postprocessing` write, applied to a
//! label map as `nnUNetv2_apply_postprocessing` does.
//!
//! The only step nnU-Net 2.8 writes is
//! `remove_all_but_largest_component_from_segmentation(seg, labels_or_regions,
//! background_label=0)` (nnunetv2/postprocessing/remove_connected_components.py): the union of
//! the labels or regions is labelled with skimage's full connectivity (26 in 3D, 8 in a
//! one-slice volume), every component but the largest goes to the background, and components
//! tied for the largest all stay (acvl_utils' `remove_all_but_largest_component` keeps each id
//! whose size equals the maximum). Steps run in the file's order.

use crate::error::NnUnetError;
use medseg_postprocess::{Connectivity, label_components};
use ndarray::{Array3, Zip};
use pytorch_reader::{PickleValue, PytorchReader};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The function nnU-Net pickles (module path included) for its one postprocessing step.
const KEEP_LARGEST: &str = "remove_all_but_largest_component_from_segmentation";
const KEEP_LARGEST_MODULE: &str = "nnunetv2.postprocessing.remove_connected_components";

/// `remove_all_but_largest_component_from_segmentation` with its keyword arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepLargestStep {
    /// The labels whose union is labelled: `labels_or_regions` flattened. A list of labels
    /// and a region (tuple) of the same labels make the same mask in nnU-Net (the union of
    /// `seg == l`), so the distinction is not kept.
    pub labels: Vec<u16>,
    pub background_label: u16,
}

/// The steps of one postprocessing file, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NnUnetPostprocessing {
    pub steps: Vec<KeepLargestStep>,
    /// The file the steps were read from (a pickle's `postprocessing.json` when the pickle
    /// holds numpy integers).
    pub read_from: PathBuf,
}

impl NnUnetPostprocessing {
    /// Reads `postprocessing.pkl` (the pickled `(functions, kwargs)` pair) or
    /// `postprocessing.json` (its `postprocessing_fns` / `postprocessing_kwargs`).
    ///
    /// The label values in a pickle that `nnUNetv2_determine_postprocessing` wrote are numpy
    /// integers, which the pickle reader cannot decode; their values are then taken from the
    /// `postprocessing.json` the same call writes beside it (`read_from` says which file).
    pub fn read(path: &Path) -> Result<Self, NnUnetError> {
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        if is_json {
            return Self::from_steps(path, read_json(path)?);
        }
        let pickled = read_pickle(path)?;
        match Self::from_steps(path, pickled.clone()) {
            Err(e) if holds_numpy_scalars(&pickled) => {
                let json = path.with_file_name("postprocessing.json");
                if !json.is_file() {
                    return Err(NnUnetError::file(
                        path,
                        format!(
                            "its label values are numpy integers, which medseg reads from the postprocessing.json nnU-Net writes beside it, but {} is missing; give that file instead ({e})",
                            json.display()
                        ),
                    ));
                }
                let from_json = read_json(&json)?;
                let same_fns = from_json.0.len() == pickled.0.len()
                    && from_json
                        .0
                        .iter()
                        .zip(&pickled.0)
                        .all(|(j, p)| p.ends_with(j.as_str()));
                if !same_fns {
                    return Err(NnUnetError::file(
                        &json,
                        format!("its functions do not match those of {}", path.display()),
                    ));
                }
                Self::from_steps(&json, from_json)
            }
            other => other,
        }
    }

    fn from_steps(path: &Path, (fns, kwargs): Steps) -> Result<Self, NnUnetError> {
        let bad = |reason: String| NnUnetError::file(path, reason);
        if fns.len() != kwargs.len() {
            return Err(bad(format!(
                "{} postprocessing functions but {} keyword-argument dicts",
                fns.len(),
                kwargs.len()
            )));
        }
        let steps = fns
            .iter()
            .zip(&kwargs)
            .map(|(f, kw)| step(f, kw).map_err(|r| bad(format!("step {f}: {r}"))))
            .collect::<Result<_, _>>()?;
        Ok(NnUnetPostprocessing {
            steps,
            read_from: path.to_path_buf(),
        })
    }

    /// Applies every step to `labels` in place.
    pub fn apply(&self, labels: &mut Array3<u16>) {
        for s in &self.steps {
            s.apply(labels);
        }
    }

    /// One line for the console: what the file does.
    pub fn describe(&self) -> String {
        if self.steps.is_empty() {
            return "no steps (nnU-Net found that none improved the validation Dice)".into();
        }
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|s| format!("keep the largest component of labels {:?}", s.labels))
            .collect();
        steps.join(", then ")
    }
}

impl KeepLargestStep {
    fn apply(&self, labels: &mut Array3<u16>) {
        let mut member = vec![false; u16::MAX as usize + 1];
        self.labels.iter().for_each(|&l| member[l as usize] = true);
        let mask = labels.mapv(|l| member[l as usize]);
        let cc = label_components(mask.view(), Connectivity::Corners);
        let Some(&largest) = cc.sizes.iter().max() else {
            return;
        };
        let keep = cc.select(|_, size| size == largest);
        Zip::from(labels)
            .and(&mask)
            .and(&keep)
            .for_each(|l, &m, &k| {
                if m && !k {
                    *l = self.background_label;
                }
            });
    }
}

/// Whether any keyword argument holds a numpy scalar (what `np.unique` gives nnU-Net's labels).
fn holds_numpy_scalars((_, kwargs): &Steps) -> bool {
    fn numpy(v: &PickleValue) -> bool {
        match v {
            PickleValue::Unsupported(t) => t.starts_with("numpy"),
            PickleValue::List(items) => items.iter().any(numpy),
            PickleValue::Dict(d) => d.values().any(numpy),
            _ => false,
        }
    }
    kwargs.iter().any(|d| d.values().any(numpy))
}

/// A function's qualified name and its keyword arguments, as read from either file.
type Steps = (Vec<String>, Vec<HashMap<String, PickleValue>>);

fn read_pickle(path: &Path) -> Result<Steps, NnUnetError> {
    let bad = |reason: String| NnUnetError::file(path, reason);
    let value = PytorchReader::read_pickle_data(path, None)
        .map_err(|e| bad(format!("not a readable postprocessing.pkl: {e}")))?;
    let items = match value {
        PickleValue::List(items) => items,
        _ => Vec::new(),
    };
    let Ok([fns, kwargs]) = <[PickleValue; 2]>::try_from(items) else {
        return Err(bad(
            "expected the pickled pair (functions, kwargs) that nnU-Net writes as postprocessing.pkl"
                .into(),
        ));
    };
    let names = match fns {
        PickleValue::List(f) => f
            .into_iter()
            .map(|f| match f {
                PickleValue::Unsupported(name) => Ok(name),
                other => Err(bad(format!("expected a function, found {other:?}"))),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad("the first item is not a list of functions".into())),
    };
    Ok((names, dicts(kwargs).map_err(bad)?))
}

fn read_json(path: &Path) -> Result<Steps, NnUnetError> {
    let bad = |reason: String| NnUnetError::file(path, reason);
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let names = v
        .get("postprocessing_fns")
        .and_then(|f| f.as_array())
        .ok_or_else(|| {
            bad("no 'postprocessing_fns' list; is this nnU-Net's postprocessing.json?".into())
        })?
        .iter()
        .map(|f| {
            f.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad(format!("postprocessing_fns: {f} is not a function name")))
        })
        .collect::<Result<_, _>>()?;
    let kwargs = v
        .get("postprocessing_kwargs")
        .map(json_to_pickle)
        .ok_or_else(|| bad("no 'postprocessing_kwargs' list".into()))?;
    Ok((names, dicts(kwargs).map_err(bad)?))
}

fn dicts(kwargs: PickleValue) -> Result<Vec<HashMap<String, PickleValue>>, String> {
    let PickleValue::List(items) = kwargs else {
        return Err("the keyword arguments are not a list".into());
    };
    items
        .into_iter()
        .map(|d| match d {
            PickleValue::Dict(d) => Ok(d),
            other => Err(format!(
                "expected a dict of keyword arguments, found {other:?}"
            )),
        })
        .collect()
}

/// The JSON file's kwargs in the pickle's shape (lists for tuples, as the reader gives them).
fn json_to_pickle(v: &serde_json::Value) -> PickleValue {
    use serde_json::Value;
    match v {
        Value::Null => PickleValue::None,
        Value::Bool(b) => PickleValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => PickleValue::Int(i),
            None => PickleValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => PickleValue::String(s.clone()),
        Value::Array(a) => PickleValue::List(a.iter().map(json_to_pickle).collect()),
        Value::Object(o) => PickleValue::Dict(
            o.iter()
                .map(|(k, v)| (k.clone(), json_to_pickle(v)))
                .collect(),
        ),
    }
}

/// One step from its function name (the pickle's `module.name`, or the JSON's bare name) and
/// keyword arguments.
fn step(function: &str, kwargs: &HashMap<String, PickleValue>) -> Result<KeepLargestStep, String> {
    let known =
        function == KEEP_LARGEST || function == format!("{KEEP_LARGEST_MODULE}.{KEEP_LARGEST}");
    if !known {
        return Err(format!(
            "unsupported postprocessing function; medseg runs nnU-Net's {KEEP_LARGEST} only"
        ));
    }
    for k in kwargs.keys() {
        if k != "labels_or_regions" && k != "background_label" {
            return Err(format!("unknown keyword argument '{k}'"));
        }
    }
    let targets = kwargs
        .get("labels_or_regions")
        .ok_or("no 'labels_or_regions' argument")?;
    let mut labels = Vec::new();
    flatten_labels(targets, &mut labels, 0)?;
    let background_label = match kwargs.get("background_label") {
        None => 0,
        Some(v) => label_value(v)?,
    };
    Ok(KeepLargestStep {
        labels,
        background_label,
    })
}

/// The label values of an int, a tuple (region) or a list of ints and tuples.
fn flatten_labels(v: &PickleValue, out: &mut Vec<u16>, depth: usize) -> Result<(), String> {
    match v {
        PickleValue::List(items) if depth < 2 => items
            .iter()
            .try_for_each(|i| flatten_labels(i, out, depth + 1)),
        other => {
            out.push(label_value(other)?);
            Ok(())
        }
    }
}

fn label_value(v: &PickleValue) -> Result<u16, String> {
    match v {
        PickleValue::Int(i) => {
            u16::try_from(*i).map_err(|_| format!("label {i} is not in 0..=65535"))
        }
        other => Err(format!("expected an integer label, found {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(labels: &[u16]) -> KeepLargestStep {
        KeepLargestStep {
            labels: labels.to_vec(),
            background_label: 0,
        }
    }

    #[test]
    fn keeps_the_largest_union_component_and_every_tie() {
        let mut l = Array3::<u16>::zeros((3, 6, 6));
        // a 2-voxel piece of label 1 touching label 2 (3 voxels) through a corner only
        l[[0, 0, 0]] = 1;
        l[[0, 0, 1]] = 1;
        l[[1, 1, 2]] = 2;
        l[[1, 1, 3]] = 2;
        l[[1, 1, 4]] = 2;
        // two separate 5-voxel pieces of label 3, tied
        l.slice_mut(ndarray::s![2, 4, 0..5]).fill(3);
        l.slice_mut(ndarray::s![0, 5, 0..5]).fill(3);
        let mut fg = l.clone();
        keep(&[1, 2]).apply(&mut fg);
        assert_eq!(fg, l, "labels 1 and 2 are one component through the corner");
        let mut only1 = l.clone();
        keep(&[1, 3]).apply(&mut only1);
        assert_eq!(
            only1[[0, 0, 0]],
            0,
            "label 1's piece is smaller than label 3's"
        );
        assert_eq!(only1[[1, 1, 2]], 2, "label 2 is not in the step");
        assert_eq!(only1[[2, 4, 0]], 3);
        assert_eq!(only1[[0, 5, 0]], 3, "tied largest components all stay");
        let mut bg = l.clone();
        KeepLargestStep {
            labels: vec![2],
            background_label: 7,
        }
        .apply(&mut bg);
        assert_eq!(bg, l, "one component: nothing changes");
    }

    #[test]
    fn steps_come_from_the_kwargs_nnunet_writes() {
        let fg = HashMap::from([(
            "labels_or_regions".to_string(),
            PickleValue::List(vec![PickleValue::Int(1), PickleValue::Int(2)]),
        )]);
        let full = format!("{KEEP_LARGEST_MODULE}.{KEEP_LARGEST}");
        assert_eq!(step(&full, &fg), Ok(keep(&[1, 2])));
        let one = HashMap::from([("labels_or_regions".to_string(), PickleValue::Int(3))]);
        assert_eq!(step(KEEP_LARGEST, &one), Ok(keep(&[3])));
        assert!(
            step("my_module.fill_holes", &one)
                .unwrap_err()
                .contains("unsupported")
        );
        let bad = HashMap::from([("labels_or_regions".to_string(), PickleValue::Int(-1))]);
        assert!(step(KEEP_LARGEST, &bad).unwrap_err().contains("-1"));
        let extra = HashMap::from([
            ("labels_or_regions".to_string(), PickleValue::Int(1)),
            ("connectivity".to_string(), PickleValue::Int(1)),
        ]);
        assert!(
            step(KEEP_LARGEST, &extra)
                .unwrap_err()
                .contains("connectivity")
        );
    }
}
