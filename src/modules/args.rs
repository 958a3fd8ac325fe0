//! Typed module arguments: what a module's `Args` struct reads from a step's rendered, validated
//! argument map, and the check that the struct and the module's `SPEC.args` table agree.
//!
//! Validation (`check`) runs against `SPEC.args` before any host is touched and keeps its
//! messages; the struct is parsed once per step from the rendered map and used by `probe`,
//! `apply` and the rest. The deserializers here convert exactly as the old map readers did
//! (`arg_str`, `arg_bool`, the former `mysql::arg_u64` and `user.rs`'s former `arg_u32`), so a module moved onto a struct
//! behaves as before: a value of the wrong shape for an optional text reads as absent, `"true"`
//! (a rendered `{{ … }}`) is a boolean, one string is a list of one.

use serde::de::{self, Deserialize, DeserializeOwned, Deserializer};
use serde_json::{Map, Value as J};

/// The argument map as it is (every module reads a struct; the tests use the map to show the
/// check finds a module without one).
#[cfg(test)]
pub(crate) type RawArgs = Map<String, J>;

/// Parse a step's arguments into the module's `Args`.
/// The deserializers below write their errors with a `{key}` the argument's name replaces, so
/// they read as the map readers' did ("`port` must be a non-negative integer, not `x`").
pub(crate) fn parse<A: DeserializeOwned>(module: &str, args: &Map<String, J>) -> anyhow::Result<A> {
    serde_path_to_error::deserialize(J::Object(args.clone())).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner().to_string();
        if inner.contains(KEY) {
            anyhow::anyhow!("{}", inner.replace(KEY, &key))
        } else {
            anyhow::anyhow!("arguments of `{module}`: {inner}")
        }
    })
}

/// Parse a step's arguments as written, before rendering (what `peer_hosts` and
/// `changes_nothing` read): an argument that does not convert yet (a `{{ … }}` where a number
/// goes) reads as not given, as it did for the map readers, instead of losing every other one.
pub(crate) fn parse_as_written<A: DeserializeOwned>(
    module: &str,
    args: &Map<String, J>,
) -> anyhow::Result<A> {
    let mut args = args.clone();
    loop {
        match serde_path_to_error::deserialize(J::Object(args.clone())) {
            Ok(a) => return Ok(a),
            Err(e) => match e.path().iter().next() {
                Some(serde_path_to_error::Segment::Map { key }) if args.remove(key).is_some() => {}
                _ => return parse(module, &args),
            },
        }
    }
}

/// Where an error of a deserializer below names its argument.
const KEY: &str = "{key}";

/// An optional text: a string, anything else absent (as `arg_str`).
pub(crate) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match J::deserialize(d)? {
        J::String(s) => Some(s),
        _ => None,
    })
}

/// A required text; anything but a string is the error `required` gave.
pub(crate) fn required_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match J::deserialize(d)? {
        J::String(s) => Ok(s),
        _ => Err(de::Error::custom(
            "argument `{key}` is missing or not a string",
        )),
    }
}

/// An optional boolean: `true`/`false` or their text (a rendered template); anything else
/// absent (as `arg_bool`).
pub(crate) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match J::deserialize(d)? {
        J::Bool(b) => Some(b),
        J::String(s) if s == "true" => Some(true),
        J::String(s) if s == "false" => Some(false),
        _ => None,
    })
}

/// An optional non-negative integer, as a number or its text (with the errors `user.rs`'s `arg_u32` gave).
pub(crate) fn uint32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match J::deserialize(d)? {
        J::Null => Ok(None),
        J::Number(n) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Ok(Some(n)),
            None => Err(de::Error::custom(format!(
                "`{{key}}` must be a non-negative integer, not {n}"
            ))),
        },
        J::String(s) => s.trim().parse().map(Some).map_err(|_| {
            de::Error::custom(format!(
                "`{{key}}` must be a non-negative integer, not `{s}`"
            ))
        }),
        other => Err(de::Error::custom(format!(
            "`{{key}}` must be an integer, not {other}"
        ))),
    }
}

/// An optional non-negative integer, as a number or its text (with the former `mysql::arg_u64`'s
/// errors).
pub(crate) fn uint64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match J::deserialize(d)? {
        J::Null => Ok(None),
        J::Number(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| de::Error::custom("`{key}` must be a non-negative integer")),
        J::String(s) => s.trim().parse().map(Some).map_err(|_| {
            de::Error::custom(format!(
                "`{{key}}` must be a non-negative integer, not `{s}`"
            ))
        }),
        other => Err(de::Error::custom(format!(
            "`{{key}}` must be an integer, not {other}"
        ))),
    }
}

/// A mapping; anything else empty.
pub(crate) fn mapping<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, J>, D::Error> {
    Ok(match J::deserialize(d)? {
        J::Object(m) => m,
        _ => Map::new(),
    })
}

/// A list of texts: a list's strings, or one non-empty string as a list of one (as
/// `arg_str_list`); anything else empty.
pub(crate) fn str_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match J::deserialize(d)? {
        J::Array(a) => a
            .into_iter()
            .filter_map(|v| match v {
                J::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        J::String(s) if !s.is_empty() => vec![s],
        _ => Vec::new(),
    })
}

/// An optional text that a step needs after all (a `copy`'s `src:` without `content:`, a
/// `file` link's `src:`): absent is the error `required` gave.
pub(crate) fn needed<'a>(value: Option<&'a str>, key: &str) -> anyhow::Result<&'a str> {
    value.ok_or_else(|| anyhow::anyhow!("argument `{key}` is missing or not a string"))
}

/// Texts given as a list or as one text, told apart where a module reads them differently.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) enum TextList {
    #[default]
    Absent,
    /// A list's strings (anything else in it is left out).
    List(Vec<String>),
    One(String),
}

impl TextList {
    /// As `arg_str_list` read them: a list's strings, or one non-empty text as a list of one.
    pub(crate) fn items(&self) -> Vec<String> {
        match self {
            TextList::List(l) => l.clone(),
            TextList::One(s) if !s.is_empty() => vec![s.clone()],
            _ => Vec::new(),
        }
    }
}

/// A [`TextList`]; anything but a list or a string is absent.
pub(crate) fn text_list<'de, D: Deserializer<'de>>(d: D) -> Result<TextList, D::Error> {
    Ok(match J::deserialize(d)? {
        J::Array(a) => TextList::List(
            a.into_iter()
                .filter_map(|v| match v {
                    J::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
        ),
        J::String(s) => TextList::One(s),
        _ => TextList::Absent,
    })
}

#[cfg(test)]
pub(crate) use drift::{spec_agrees, spec_agrees_beside};

#[cfg(test)]
mod drift {
    use serde::de::{self, Deserializer, Visitor};
    use serde_json::{json, Map, Value as J};

    use super::super::spec::{ArgType, ModuleSpec};

    /// A deserializer that only records the field names a struct asks for.
    struct Fields<'a>(&'a mut Option<&'static [&'static str]>);

    impl<'de> Deserializer<'de> for Fields<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = Some(fields);
            Err(de::Error::custom("fields recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    /// The field names of `A`, if it is a struct (`None` for [`super::RawArgs`]).
    fn fields_of<A: serde::de::DeserializeOwned>() -> Option<Vec<&'static str>> {
        let mut seen = None;
        let _ = A::deserialize(Fields(&mut seen));
        seen.map(<[_]>::to_vec)
    }

    /// A value `check` accepts for an argument of this spec.
    fn sample(ty: ArgType, choices: &[&str]) -> J {
        if let Some(c) = choices.first() {
            return json!(c);
        }
        match ty {
            ArgType::Int => json!(1),
            ArgType::Bool => json!(true),
            ArgType::StrList | ArgType::ExprList => json!(["x"]),
            ArgType::MailList => json!(["ops@example.org"]),
            ArgType::Map => json!({}),
            ArgType::Mode => json!("0644"),
            ArgType::OctalMode => json!("0644"),
            ArgType::CommitId => json!("0123456789abcdef0123456789abcdef01234567"),
            _ => json!("x"),
        }
    }

    /// Do a module's `Args` struct and its `SPEC.args` say the same: the same names, a step with
    /// only the required arguments parses, one missing any of them does not, one with every
    /// argument parses? `Ok(false)`: the module still reads the raw map (nothing to compare).
    pub(crate) fn spec_agrees<A: serde::de::DeserializeOwned>(
        spec: &ModuleSpec,
    ) -> Result<bool, String> {
        spec_agrees_beside::<A>(spec, &[])
    }

    /// As [`spec_agrees`], for a struct that also has `undo_only`: arguments only the module's
    /// own way back (an `UndoAction::Rerun`) passes, which a playbook may not write.
    pub(crate) fn spec_agrees_beside<A: serde::de::DeserializeOwned>(
        spec: &ModuleSpec,
        undo_only: &[&str],
    ) -> Result<bool, String> {
        let Some(mut fields) = fields_of::<A>() else {
            return Ok(false);
        };
        fields.retain(|f| !undo_only.contains(f));
        let mut names: Vec<&str> = spec.args.iter().map(|a| a.name).collect();
        fields.sort_unstable();
        names.sort_unstable();
        if fields != names {
            return Err(format!(
                "{}: struct fields {fields:?}, SPEC.args {names:?}",
                spec.name
            ));
        }
        let parses = |m: &Map<String, J>| super::parse::<A>(spec.name, m);
        let required: Map<String, J> = spec
            .args
            .iter()
            .filter(|a| a.required)
            .map(|a| (a.name.to_string(), sample(a.ty, a.choices)))
            .collect();
        parses(&required).map_err(|e| format!("{}: only the required ones: {e}", spec.name))?;
        for key in required.keys() {
            let mut less = required.clone();
            less.remove(key);
            if parses(&less).is_ok() {
                return Err(format!(
                    "{}: `{key}` is required in SPEC but not in the struct",
                    spec.name
                ));
            }
        }
        let all: Map<String, J> = spec
            .args
            .iter()
            .map(|a| (a.name.to_string(), sample(a.ty, a.choices)))
            .collect();
        parses(&all).map_err(|e| format!("{}: every argument: {e}", spec.name))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::{json, Map, Value as J};

    use super::super::spec::{arg, req, ArgType as T, ModuleSpec, Reversibility};
    use super::*;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "demo",
        args: &[
            req("name", T::Str),
            arg("port", T::Int),
            arg("force", T::Bool),
        ],
        free_form: None,
        one_of: &[],
        any_of: &[],
        reversibility: Reversibility::ReadOnly,
    };

    #[derive(Debug, Deserialize)]
    struct Demo {
        #[serde(deserialize_with = "required_text")]
        name: String,
        #[serde(default, deserialize_with = "uint32")]
        port: Option<u32>,
        #[serde(default, deserialize_with = "flag")]
        force: Option<bool>,
    }

    fn map(v: J) -> Map<String, J> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn values_convert_as_the_map_readers_did() {
        let d: Demo = parse(
            "demo",
            &map(json!({"name": "a", "port": "8080", "force": "true"})),
        )
        .unwrap();
        assert_eq!(
            (d.name.as_str(), d.port, d.force),
            ("a", Some(8080), Some(true))
        );
        let d: Demo = parse("demo", &map(json!({"name": "a", "port": null, "force": 3}))).unwrap();
        assert_eq!((d.port, d.force), (None, None));
    }

    #[test]
    fn errors_name_the_argument_as_before() {
        let err = |v: J| parse::<Demo>("demo", &map(v)).unwrap_err().to_string();
        assert_eq!(
            err(json!({"name": "a", "port": "http"})),
            "`port` must be a non-negative integer, not `http`"
        );
        assert_eq!(
            err(json!({"name": "a", "port": -1})),
            "`port` must be a non-negative integer, not -1"
        );
        assert_eq!(
            err(json!({"name": 7})),
            "argument `name` is missing or not a string"
        );
        assert_eq!(err(json!({})), "arguments of `demo`: missing field `name`");
    }

    #[test]
    fn wide_integers_and_mappings_convert_as_before() {
        #[derive(Debug, Deserialize)]
        struct Wide {
            #[serde(default, deserialize_with = "uint64")]
            wait: Option<u64>,
            #[serde(default, deserialize_with = "mapping")]
            json: Map<String, J>,
        }
        let w: Wide = parse("wide", &map(json!({"wait": "5000000000", "json": "x"}))).unwrap();
        assert_eq!((w.wait, w.json.len()), (Some(5_000_000_000), 0));
        let err = |v: J| parse::<Wide>("wide", &map(v)).unwrap_err().to_string();
        assert_eq!(
            err(json!({"wait": -1})),
            "`wait` must be a non-negative integer"
        );
        assert_eq!(
            err(json!({"wait": [1]})),
            "`wait` must be an integer, not [1]"
        );
    }

    #[test]
    fn arguments_as_written_keep_what_converts() {
        // Before rendering, a `{{ … }}` where a number goes reads as not given; the rest stays.
        let written = map(json!({"name": "a", "port": "{{ port }}", "force": true}));
        let d: Demo = parse_as_written("demo", &written).unwrap();
        assert_eq!((d.name.as_str(), d.port, d.force), ("a", None, Some(true)));
        assert!(parse::<Demo>("demo", &written).is_err());
        // A required argument missing stays an error.
        let e = parse_as_written::<Demo>("demo", &map(json!({"port": "x"}))).unwrap_err();
        assert_eq!(e.to_string(), "arguments of `demo`: missing field `name`");
    }

    #[test]
    fn a_struct_that_disagrees_with_its_spec_is_found() {
        assert_eq!(spec_agrees::<Demo>(&SPEC), Ok(true));
        assert_eq!(spec_agrees::<RawArgs>(&SPEC), Ok(false));
        // A field the table does not have (or lacks one): the names differ.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Renamed {
            #[serde(deserialize_with = "required_text")]
            name: String,
            #[serde(default, deserialize_with = "uint32")]
            prt: Option<u32>,
            #[serde(default, deserialize_with = "flag")]
            force: Option<bool>,
        }
        let e = spec_agrees::<Renamed>(&SPEC).unwrap_err();
        assert!(e.contains("struct fields") && e.contains("prt"), "{e}");
        // Required in the table, optional in the struct.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Lax {
            #[serde(default, deserialize_with = "text")]
            name: Option<String>,
            #[serde(default, deserialize_with = "uint32")]
            port: Option<u32>,
            #[serde(default, deserialize_with = "flag")]
            force: Option<bool>,
        }
        let e = spec_agrees::<Lax>(&SPEC).unwrap_err();
        assert!(
            e.contains("`name` is required in SPEC but not in the struct"),
            "{e}"
        );
        // Optional in the table, required in the struct.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Strict {
            #[serde(deserialize_with = "required_text")]
            name: String,
            #[serde(deserialize_with = "uint32")]
            port: Option<u32>,
            #[serde(default, deserialize_with = "flag")]
            force: Option<bool>,
        }
        let e = spec_agrees::<Strict>(&SPEC).unwrap_err();
        assert!(e.contains("only the required ones"), "{e}");
        // A type the table's values do not fit.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct WrongType {
            #[serde(deserialize_with = "required_text")]
            name: String,
            #[serde(default, deserialize_with = "uint32")]
            port: Option<u32>,
            #[serde(default)]
            force: Option<u32>,
        }
        let e = spec_agrees::<WrongType>(&SPEC).unwrap_err();
        assert!(e.contains("every argument"), "{e}");
        // A field only the module's way back passes, declared as such.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct WithUndo {
            #[serde(deserialize_with = "required_text")]
            name: String,
            #[serde(default, deserialize_with = "uint32")]
            port: Option<u32>,
            #[serde(default, deserialize_with = "flag")]
            force: Option<bool>,
            #[serde(default, deserialize_with = "text")]
            restore_from: Option<String>,
        }
        let e = spec_agrees::<WithUndo>(&SPEC).unwrap_err();
        assert!(e.contains("restore_from"), "{e}");
        assert_eq!(
            spec_agrees_beside::<WithUndo>(&SPEC, &["restore_from"]),
            Ok(true)
        );
    }
}
