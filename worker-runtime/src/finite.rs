//! JSON has no NaN or infinity, and serde_json silently writes them as `null`. Before a result
//! leaves the worker, find such a float and name where it is, so the job fails with a message
//! instead of posting data the user did not produce.
//!
//! Over 400 lines: a `serde::Serializer` must implement every method of the trait and its seven
//! compound-serializer traits. Walking the value this way finds the path without building a
//! `serde_json::Value` copy of a large output, and it only runs when the encoded output holds a
//! `null` (where a NaN could hide), so the common path costs nothing.

use std::fmt::{self, Display};

use serde::ser::{self, Impossible, Serialize};

/// Where in `value` the first NaN or infinite float is (`output.scores[2]`), if anywhere.
pub(crate) fn find_non_finite<T: Serialize + ?Sized>(
    value: &T,
    root: &str,
) -> Option<(String, String)> {
    let mut finder = Finder {
        path: vec![Segment::Root(root.to_owned())],
    };
    match value.serialize(&mut finder) {
        Err(Found::NonFinite(path, what)) => Some((path, what)),
        _ => None,
    }
}

#[derive(Clone)]
enum Segment {
    Root(String),
    Field(String),
    Index(usize),
}

struct Finder {
    path: Vec<Segment>,
}

impl Finder {
    fn path(&self) -> String {
        let mut out = String::new();
        for segment in &self.path {
            match segment {
                Segment::Root(root) => out.push_str(root),
                Segment::Field(name) => {
                    out.push('.');
                    out.push_str(name);
                }
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    fn float(&self, value: f64) -> Result<(), Found> {
        if value.is_finite() {
            Ok(())
        } else {
            Err(Found::NonFinite(self.path(), value.to_string()))
        }
    }

    fn nested<T: Serialize + ?Sized>(&mut self, segment: Segment, value: &T) -> Result<(), Found> {
        self.path.push(segment);
        let result = value.serialize(&mut *self);
        self.path.pop();
        result
    }
}

/// Stops the walk: a non-finite float was found (or serialization itself failed, which the
/// real serializer will report).
#[derive(Debug)]
enum Found {
    NonFinite(String, String),
    Other,
}

impl Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stopped")
    }
}

impl std::error::Error for Found {}

impl ser::Error for Found {
    fn custom<M: Display>(_: M) -> Found {
        Found::Other
    }
}

macro_rules! ok_scalars {
    ($($method:ident: $ty:ty),*) => {
        $(fn $method(self, _: $ty) -> Result<(), Found> { Ok(()) })*
    };
}

impl<'a> ser::Serializer for &'a mut Finder {
    type Ok = ();
    type Error = Found;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    ok_scalars!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
        serialize_u128: u128, serialize_char: char, serialize_str: &str, serialize_bytes: &[u8]);

    fn serialize_f32(self, v: f32) -> Result<(), Found> {
        self.float(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Found> {
        self.float(v)
    }
    fn serialize_none(self) -> Result<(), Found> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Found> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Found> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Found> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Found> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Found> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Found> {
        self.nested(Segment::Field(variant.to_owned()), value)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, Found> {
        Ok(Compound::new(self))
    }
    fn serialize_tuple(self, _: usize) -> Result<Compound<'a>, Found> {
        Ok(Compound::new(self))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Found> {
        Ok(Compound::new(self))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Found> {
        self.path.push(Segment::Field(variant.to_owned()));
        Ok(Compound {
            pushed: true,
            ..Compound::new(self)
        })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, Found> {
        Ok(Compound::new(self))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Found> {
        Ok(Compound::new(self))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Found> {
        self.path.push(Segment::Field(variant.to_owned()));
        Ok(Compound {
            pushed: true,
            ..Compound::new(self)
        })
    }
}

/// Walks the elements of a sequence, map or struct, keeping the path.
struct Compound<'a> {
    finder: &'a mut Finder,
    index: usize,
    key: Option<String>,
    pushed: bool,
}

impl<'a> Compound<'a> {
    fn new(finder: &'a mut Finder) -> Compound<'a> {
        Compound {
            finder,
            index: 0,
            key: None,
            pushed: false,
        }
    }
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Found> {
        let index = self.index;
        self.index += 1;
        self.finder.nested(Segment::Index(index), value)
    }
    fn end(self) -> Result<(), Found> {
        if self.pushed {
            self.finder.path.pop();
        }
        Ok(())
    }
}

/// Sequences and tuples: each element is at the next index.
macro_rules! indexed_compound {
    ($($trait:ident :: $method:ident),*) => {
        $(impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = Found;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Found> {
                self.element(value)
            }
            fn end(self) -> Result<(), Found> {
                Compound::end(self)
            }
        })*
    };
}

indexed_compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Found;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Found> {
        self.key = Some(key.serialize(KeyName).unwrap_or_else(|_| "?".to_owned()));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Found> {
        let key = self.key.take().unwrap_or_else(|| "?".to_owned());
        self.finder.nested(Segment::Field(key), value)
    }
    fn end(self) -> Result<(), Found> {
        Compound::end(self)
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Found;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Found> {
        self.finder.nested(Segment::Field(name.to_owned()), value)
    }
    fn end(self) -> Result<(), Found> {
        Compound::end(self)
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Found;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Found> {
        self.finder.nested(Segment::Field(name.to_owned()), value)
    }
    fn end(self) -> Result<(), Found> {
        Compound::end(self)
    }
}

/// Renders a map key (string, number, bool, char) for the path.
struct KeyName;

macro_rules! key_display {
    ($($method:ident: $ty:ty),*) => {
        $(fn $method(self, v: $ty) -> Result<String, Found> { Ok(v.to_string()) })*
    };
}

impl ser::Serializer for KeyName {
    type Ok = String;
    type Error = Found;
    type SerializeSeq = Impossible<String, Found>;
    type SerializeTuple = Impossible<String, Found>;
    type SerializeTupleStruct = Impossible<String, Found>;
    type SerializeTupleVariant = Impossible<String, Found>;
    type SerializeMap = Impossible<String, Found>;
    type SerializeStruct = Impossible<String, Found>;
    type SerializeStructVariant = Impossible<String, Found>;

    key_display!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
        serialize_u128: u128, serialize_f32: f32, serialize_f64: f64, serialize_char: char, serialize_str: &str);

    fn serialize_bytes(self, _: &[u8]) -> Result<String, Found> {
        Err(Found::Other)
    }
    fn serialize_none(self) -> Result<String, Found> {
        Err(Found::Other)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<String, Found> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<String, Found> {
        Err(Found::Other)
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<String, Found> {
        Ok(name.to_owned())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, Found> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<String, Found> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, Found> {
        Err(Found::Other)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Found> {
        Err(Found::Other)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Found> {
        Err(Found::Other)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Found> {
        Err(Found::Other)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Found> {
        Err(Found::Other)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Found> {
        Err(Found::Other)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Found> {
        Err(Found::Other)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Found> {
        Err(Found::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    struct Scores {
        name: String,
        values: Vec<f64>,
        nested: BTreeMap<String, Option<f32>>,
    }

    #[test]
    fn finds_the_path_of_a_non_finite_float() {
        let ok = Scores {
            name: "a".into(),
            values: vec![1.0, 2.5],
            nested: BTreeMap::new(),
        };
        assert!(find_non_finite(&ok, "output").is_none());
        let bad = Scores {
            name: "a".into(),
            values: vec![1.0, f64::NAN],
            nested: BTreeMap::new(),
        };
        assert_eq!(
            find_non_finite(&bad, "output"),
            Some(("output.values[1]".into(), "NaN".into()))
        );
        let mut nested = BTreeMap::new();
        nested.insert("x".to_owned(), Some(f32::INFINITY));
        let bad = Scores {
            name: "a".into(),
            values: vec![],
            nested,
        };
        assert_eq!(
            find_non_finite(&bad, "output"),
            Some(("output.nested.x".into(), "inf".into()))
        );
        assert_eq!(
            find_non_finite(&f64::NEG_INFINITY, "output"),
            Some(("output".into(), "-inf".into()))
        );
        assert_eq!(
            find_non_finite(&serde_json::json!({"a": [1, 2.0]}), "output"),
            None
        );
    }
}
