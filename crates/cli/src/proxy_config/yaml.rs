//! A small YAML writer for JSON values (the config dump is plain data).

use serde_json::Value;

pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write(&mut out, value, 0);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn write(out: &mut String, value: &Value, indent: usize) {
    let pad = "  ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                out.push_str(&format!("{pad}{}:", scalar_key(key)));
                nested(out, v, indent);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&format!("{pad}-"));
                match item {
                    Value::Object(map) if !map.is_empty() => {
                        // The first key goes on the dash line, the rest align under it.
                        let mut first = true;
                        for (key, v) in map {
                            if first {
                                out.push_str(&format!(" {}:", scalar_key(key)));
                                first = false;
                            } else {
                                out.push_str(&format!("{pad}  {}:", scalar_key(key)));
                            }
                            nested(out, v, indent + 1);
                        }
                    }
                    other => nested(out, other, indent),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

fn nested(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write(out, value, indent + 1);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write(out, value, indent + 1);
        }
        other => out.push_str(&format!(" {}\n", scalar(other))),
    }
}

fn scalar_key(key: &str) -> String {
    scalar(&Value::String(key.to_owned()))
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./@".contains(c))
                && !matches!(
                    s.as_str(),
                    "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
                )
                && s.parse::<f64>().is_err();
            if plain {
                s.clone()
            } else {
                // JSON strings are valid YAML double-quoted scalars.
                serde_json::to_string(s).unwrap_or_default()
            }
        }
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_values_render_as_block_yaml() {
        let value = serde_json::json!({
            "name": "outbound|9080||reviews",
            "weights": [{"cluster": "v1", "weight": 90}, {"cluster": "v2", "weight": 10}],
            "empty": [],
            "ready": true,
        });
        let yaml = to_string(&value);
        assert_eq!(
            yaml,
            "empty: []\nname: \"outbound|9080||reviews\"\nready: true\nweights:\n  - cluster: v1\n    weight: 90\n  - cluster: v2\n    weight: 10\n"
        );
    }
}
