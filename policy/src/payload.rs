//! One streaming pass over the `validate` payload that keeps only what the decision reads.
//!
//! `{"settings": ..., "request": <AdmissionRequest>}` is read without building a
//! `serde_json::Value` of the whole payload: the request's `object` and `oldObject` become
//! `Value`s, the few request fields the decision reads are kept (borrowed from the payload when
//! they have no escapes), the settings are kept as their raw JSON text, and everything else is
//! checked and dropped on the fly.
//!
//! The result is the same as parsing the whole payload into a `Value` first:
//! - every part of the payload but the settings goes through the same `serde_json` parsing
//!   (UTF-8, escapes and surrogates, number range, nesting depth); the settings text is parsed
//!   into a `Value` afterwards, and a payload found malformed either way is reported with the
//!   error of a whole-payload `Value` parse. One difference: settings nested to within one
//!   level of serde_json's depth limit are reported as invalid settings (500), not as a
//!   malformed payload (400), because they are parsed on their own;
//! - a repeated key means its last value, as in a `Value` map;
//! - a field of an unexpected JSON type is remembered as such (never an early parse error), so the
//!   decision reports it with the same message.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// The `visit_*` methods for JSON `null`, booleans and numbers: each of the latter reads as
/// `$other`, `null` as `$null` (the field types below differ only in what else they accept).
macro_rules! numbers_bools_and_null_as {
    ($value:ty, $other:expr, $null:expr) => {
        fn visit_bool<E: Error>(self, _: bool) -> Result<$value, E> {
            Ok($other)
        }

        fn visit_i64<E: Error>(self, _: i64) -> Result<$value, E> {
            Ok($other)
        }

        fn visit_u64<E: Error>(self, _: u64) -> Result<$value, E> {
            Ok($other)
        }

        fn visit_f64<E: Error>(self, _: f64) -> Result<$value, E> {
            Ok($other)
        }

        fn visit_unit<E: Error>(self) -> Result<$value, E> {
            Ok($null)
        }

        fn visit_none<E: Error>(self) -> Result<$value, E> {
            Ok($null)
        }
    };
}

/// [`numbers_bools_and_null_as`], and strings too read as `$other`.
macro_rules! scalars_and_null_as {
    ($value:ty, $other:expr, $null:expr) => {
        numbers_bools_and_null_as!($value, $other, $null);

        fn visit_str<E: Error>(self, _: &str) -> Result<$value, E> {
            Ok($other)
        }
    };
}

/// A JSON value that is checked like any other and then dropped. (Not `serde::de::IgnoredAny`:
/// serde_json skips ignored values without checking surrogates, number range or depth.)
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Skip, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    scalars_and_null_as!(Skip, Skip, Skip);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

/// A field that should hold a string.
#[derive(Debug, Default)]
pub(crate) enum Text<'a> {
    /// Absent or `null`.
    #[default]
    Missing,
    /// A string.
    Str(Cow<'a, str>),
    /// Any other JSON type.
    Other,
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text<'de>, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    numbers_bools_and_null_as!(Text<'de>, Text::Other, Text::Missing);

    fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Text<'de>, E> {
        Ok(Text::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Text<'de>, E> {
        Ok(Text::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: Error>(self, v: String) -> Result<Text<'de>, E> {
        Ok(Text::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Text<'de>, A::Error> {
        SkipVisitor.visit_seq(seq).map(|_| Text::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Text<'de>, A::Error> {
        SkipVisitor.visit_map(map).map(|_| Text::Other)
    }
}

/// A field that should hold a list of strings.
#[derive(Debug, Default)]
pub(crate) enum TextList<'a> {
    /// Absent or `null`.
    #[default]
    Missing,
    /// A list of strings.
    List(Vec<Cow<'a, str>>),
    /// Any other JSON value, including a list with an item that is not a string.
    Other,
}

impl<'de> Deserialize<'de> for TextList<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<TextList<'de>, D::Error> {
        deserializer.deserialize_any(TextListVisitor)
    }
}

struct TextListVisitor;

impl<'de> Visitor<'de> for TextListVisitor {
    type Value = TextList<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    scalars_and_null_as!(TextList<'de>, TextList::Other, TextList::Missing);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextList<'de>, A::Error> {
        let mut items = Vec::new();
        let mut all_strings = true;
        // Every item is read (and checked) even after one that is not a string.
        while let Some(item) = seq.next_element::<Text<'de>>()? {
            match item {
                Text::Str(s) if all_strings => items.push(s),
                _ => all_strings = false,
            }
        }
        Ok(if all_strings {
            TextList::List(items)
        } else {
            TextList::Other
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TextList<'de>, A::Error> {
        SkipVisitor.visit_map(map).map(|_| TextList::Other)
    }
}

/// The named fields of a JSON object that are kept; every other key is skipped.
pub(crate) trait Fields<'de>: Default {
    /// The keys kept, in the order [`Fields::read`] numbers them.
    const NAMES: &'static [&'static str];

    /// Reads the value of key `NAMES[index]`, replacing any earlier value of the same key.
    fn read<A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error>;
}

/// A field that should hold a JSON object.
#[derive(Debug, Default)]
pub(crate) enum Object<T> {
    /// Absent or `null`.
    #[default]
    Missing,
    /// An object, with the fields kept.
    Fields(T),
    /// Any other JSON type.
    Other,
}

impl<'de, T: Fields<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Object<T>, D::Error> {
        deserializer.deserialize_any(ObjectVisitor(PhantomData))
    }
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Fields<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = Object<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    scalars_and_null_as!(Object<T>, Object::Other, Object::Missing);

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Object<T>, A::Error> {
        SkipVisitor.visit_seq(seq).map(|_| Object::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<T>, A::Error> {
        let mut fields = T::default();
        while let Some(key) = map.next_key_seed(Key(T::NAMES))? {
            match key {
                Some(index) => fields.read(index, &mut map)?,
                None => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(Object::Fields(fields))
    }
}

/// Reads an object key as its index in a list of names (`None` for any other key), without
/// allocating.
struct Key(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|name| *name == v))
    }
}

/// The top level of the payload.
#[derive(Debug, Default)]
pub(crate) struct Payload<'a> {
    /// The policy settings as written in the payload (`None` when absent). Only their syntax,
    /// UTF-8 and escapes are checked here (not surrogate pairs, number range or nesting depth):
    /// they are parsed into a `Value` when they differ from the last settings seen (see
    /// `crate::settings_for`). A value that a repeated `settings` key replaces is checked fully.
    pub settings: Option<&'a RawValue>,
    /// The AdmissionRequest.
    pub request: Object<RequestFields<'a>>,
}

impl<'de> Fields<'de> for Payload<'de> {
    const NAMES: &'static [&'static str] = &["settings", "request"];

    fn read<A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error> {
        match index {
            0 => {
                if let Some(replaced) = self.settings.replace(map.next_value()?) {
                    serde_json::from_str::<Skip>(replaced.get()).map_err(A::Error::custom)?;
                }
            }
            _ => self.request = map.next_value()?,
        }
        Ok(())
    }
}

/// The AdmissionRequest fields the decision reads.
#[derive(Debug, Default)]
pub(crate) struct RequestFields<'a> {
    pub operation: Text<'a>,
    pub sub_resource: Text<'a>,
    pub namespace: Text<'a>,
    pub resource: Object<ResourceFields<'a>>,
    pub user_info: Object<UserFields<'a>>,
    /// `null` when absent.
    pub object: Value,
    /// `null` when absent.
    pub old_object: Value,
}

impl<'de> Fields<'de> for RequestFields<'de> {
    const NAMES: &'static [&'static str] = &[
        "operation",
        "subResource",
        "namespace",
        "resource",
        "userInfo",
        "object",
        "oldObject",
    ];

    fn read<A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error> {
        match index {
            0 => self.operation = map.next_value()?,
            1 => self.sub_resource = map.next_value()?,
            2 => self.namespace = map.next_value()?,
            3 => self.resource = map.next_value()?,
            4 => self.user_info = map.next_value()?,
            5 => self.object = map.next_value()?,
            _ => self.old_object = map.next_value()?,
        }
        Ok(())
    }
}

/// `request.resource`.
#[derive(Debug, Default)]
pub(crate) struct ResourceFields<'a> {
    pub group: Text<'a>,
    pub resource: Text<'a>,
}

impl<'de> Fields<'de> for ResourceFields<'de> {
    const NAMES: &'static [&'static str] = &["group", "resource"];

    fn read<A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error> {
        match index {
            0 => self.group = map.next_value()?,
            _ => self.resource = map.next_value()?,
        }
        Ok(())
    }
}

/// `request.userInfo`.
#[derive(Debug, Default)]
pub(crate) struct UserFields<'a> {
    pub username: Text<'a>,
    pub groups: TextList<'a>,
}

impl<'de> Fields<'de> for UserFields<'de> {
    const NAMES: &'static [&'static str] = &["username", "groups"];

    fn read<A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error> {
        match index {
            0 => self.username = map.next_value()?,
            _ => self.groups = map.next_value()?,
        }
        Ok(())
    }
}

/// Parses a `validate` payload. A payload that is not JSON is an error; one that is JSON but
/// not an object is `Object::Missing` (`null`) or `Object::Other`. The error may differ from
/// the one `serde_json::from_slice::<Value>` gives only when the settings are malformed in a way
/// their syntax check does not see (see [`Payload::settings`]); callers report that one.
pub(crate) fn parse(payload: &[u8]) -> Result<Object<Payload<'_>>, serde_json::Error> {
    serde_json::from_slice(payload)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

    use super::*;

    fn top(payload: &str) -> Payload<'_> {
        match parse(payload.as_bytes()).unwrap() {
            Object::Fields(p) => p,
            other => panic!("not an object: {other:?}"),
        }
    }

    fn request<'a>(p: &'a Payload<'a>) -> &'a RequestFields<'a> {
        match &p.request {
            Object::Fields(r) => r,
            other => panic!("no request: {other:?}"),
        }
    }

    fn text<'a>(t: &'a Text<'a>) -> Option<&'a str> {
        match t {
            Text::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Malformed payloads fail exactly as a whole-payload `Value` parse does, even where the
    /// fault is in a part that is not kept.
    #[test]
    fn the_same_payloads_are_malformed_with_the_same_error() {
        let deep = format!("{{\"request\":{{\"uid\":{}1{}}}}}", "[".repeat(200), "]".repeat(200));
        let deep_top = "[".repeat(10_000);
        let bad_utf8 = b"{\"request\":{\"uid\":\"\xff\"}}".to_vec();
        let bad_utf8_key = b"{\"request\":{\"\xff\":1}}".to_vec();
        let mut cases: Vec<Vec<u8>> = [
            "",
            "not json",
            "{\"request\":{\"uid\":\"\\ud800\"}}",
            "{\"request\":{\"uid\":\"\\ud800x\"},\"settings\":[]}",
            "{\"request\":{\"options\":{\"n\":1e999}}}",
            "{\"request\":{\"dryRun\":tru}}",
            "{\"request\":{\"uid\":\"a\u{1}b\"}}",
            "{\"request\":{\"uid\":\"\\x\"}}",
            "{\"request\":{\"kind\":{\"a\":1,}}}",
            "{\"request\":{}} x",
            "{\"request\":{\"operation\":1e999}}",
            "{\"request\":{\"userInfo\":{\"groups\":[\"a\",1e999]}}}",
            "[1e999]",
            "{\"a\":{\"\\ud800\":1}}",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        cases.extend([deep.into_bytes(), deep_top.into_bytes(), bad_utf8, bad_utf8_key]);
        for case in &cases {
            let want = serde_json::from_slice::<Value>(case).err().map(|e| e.to_string());
            let got = parse(case).err().map(|e| e.to_string());
            assert!(want.is_some(), "{:?} is valid JSON", String::from_utf8_lossy(case));
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(case));
        }
    }

    #[test]
    fn payloads_that_are_not_objects() {
        assert!(matches!(parse(b"null").unwrap(), Object::Missing));
        for other in ["[]", "[{\"request\":{}}]", "\"x\"", "1", "-1", "1.5", "true"] {
            assert!(matches!(parse(other.as_bytes()).unwrap(), Object::Other), "{other}");
        }
    }

    #[test]
    fn the_last_of_repeated_keys_counts_as_in_a_value() {
        let p = top(concat!(
            r#"{"request":{"operation":"DELETE"},"settings":{"claimer":"a"},"#,
            r#""request":{"operation":"CREATE","operation":"UPDATE","userInfo":{"username":"x"},"#,
            r#""userInfo":{"groups":["g"]},"object":{"a":1},"object":{"b":2}},"settings":null}"#
        ));
        assert_eq!(p.settings.map(RawValue::get), Some("null"));
        let r = request(&p);
        assert_eq!(text(&r.operation), Some("UPDATE"));
        let Object::Fields(user) = &r.user_info else { panic!() };
        assert!(matches!(user.username, Text::Missing));
        assert!(matches!(&user.groups, TextList::List(g) if g == &["g"]));
        assert_eq!(r.object, serde_json::json!({"b": 2}));
        assert_eq!(r.old_object, Value::Null);
        let p = top(r#"{"request":{},"request":7}"#);
        assert!(matches!(p.request, Object::Other));
    }

    #[test]
    fn escaped_keys_and_values_are_read() {
        let p = top(r#"{"req\u0075est":{"operation":"CRE\u0041TE","resource":{"group":"olympus.io"}}}"#);
        let r = request(&p);
        assert_eq!(text(&r.operation), Some("CREATE"));
        assert!(matches!(r.operation, Text::Str(Cow::Owned(_))));
        let Object::Fields(res) = &r.resource else { panic!() };
        assert_eq!(text(&res.group), Some("olympus.io"));
        assert!(matches!(res.group, Text::Str(Cow::Borrowed(_))));
        assert!(matches!(res.resource, Text::Missing));
    }

    #[test]
    fn wrong_types_are_kept_as_such() {
        let p = top(concat!(
            r#"{"request":{"operation":["CREATE"],"subResource":{"a":"b"},"namespace":null,"#,
            r#""resource":"automatons","userInfo":{"username":7,"groups":["a",null]}}}"#
        ));
        let r = request(&p);
        assert!(matches!(r.operation, Text::Other));
        assert!(matches!(r.sub_resource, Text::Other));
        assert!(matches!(r.namespace, Text::Missing));
        assert!(matches!(r.resource, Object::Other));
        let Object::Fields(user) = &r.user_info else { panic!() };
        assert!(matches!(user.username, Text::Other));
        assert!(matches!(user.groups, TextList::Other));
        for groups in ["\"a\"", "{}", "1", "true"] {
            let payload = format!(r#"{{"request":{{"userInfo":{{"groups":{groups}}}}}}}"#);
            let p = top(&payload);
            let Object::Fields(user) = &request(&p).user_info else {
                panic!()
            };
            assert!(matches!(user.groups, TextList::Other), "{groups}");
        }
    }
}
