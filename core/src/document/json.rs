//! Automerge values as JSON, for reports people and scripts read.

use automerge::{Automerge, ObjId, ObjType, ReadDoc, ScalarValue, Value};

use crate::error::Result;

/// A value as JSON; objects in full (their current values).
pub fn to_json(doc: &Automerge, value: &Value<'_>, id: &ObjId) -> Result<serde_json::Value> {
    Ok(match value {
        Value::Scalar(scalar) => scalar_json(scalar),
        Value::Object(ObjType::Map | ObjType::Table) => {
            let mut map = serde_json::Map::new();
            for key in doc.keys(id) {
                if let Some((child, child_id)) = doc.get(id, key.as_str())? {
                    map.insert(key, to_json(doc, &child, &child_id)?);
                }
            }
            serde_json::Value::Object(map)
        }
        Value::Object(ObjType::List) => {
            let mut items = Vec::new();
            for index in 0..doc.length(id) {
                if let Some((child, child_id)) = doc.get(id, index)? {
                    items.push(to_json(doc, &child, &child_id)?);
                }
            }
            serde_json::Value::Array(items)
        }
        Value::Object(ObjType::Text) => serde_json::Value::String(doc.text(id)?),
    })
}

fn scalar_json(scalar: &ScalarValue) -> serde_json::Value {
    match scalar {
        ScalarValue::Str(s) => serde_json::Value::String(s.to_string()),
        ScalarValue::Int(i) => (*i).into(),
        ScalarValue::Uint(u) => (*u).into(),
        ScalarValue::F64(f) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        ScalarValue::Counter(c) => i64::from(c).into(),
        ScalarValue::Timestamp(t) => (*t).into(),
        ScalarValue::Boolean(b) => (*b).into(),
        ScalarValue::Null => serde_json::Value::Null,
        ScalarValue::Bytes(bytes) => serde_json::Value::String(format!("<{} bytes>", bytes.len())),
        ScalarValue::Unknown { bytes, .. } => {
            serde_json::Value::String(format!("<{} unknown bytes>", bytes.len()))
        }
    }
}
