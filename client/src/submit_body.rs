//! Reading `POST /v1/tasks` in one pass: `{"tasks": [...]}` is an atomic batch, any other object
//! is one task.
//!
//! A batch has exactly one field, so `tasks` is its first key; the first key decides, and a
//! one-task body goes on to [`TaskIn`]'s own reader with that key handed back first. Nothing is
//! buffered or parsed twice, the payloads stay raw, and the errors are the ones `TaskIn` and
//! `BatchIn` give (a `tasks` field in a one-task body is an unknown field there).

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::wire::{BatchIn, SubmitIn, TaskIn};

impl<'de> Deserialize<'de> for SubmitIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SubmitVisitor)
    }
}

struct SubmitVisitor;

impl<'de> Visitor<'de> for SubmitVisitor {
    type Value = SubmitIn;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a task object, or {\"tasks\": [...]} for an atomic batch")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SubmitIn, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            // `{}`: one task without its queue.
            return Err(de::Error::missing_field("queue"));
        };
        if first == "tasks" {
            let tasks = map.next_value()?;
            if let Some(other) = map.next_key::<String>()? {
                return Err(de::Error::custom(format_args!(
                    "a batch has only the field `tasks` (found `{other}` beside it)"
                )));
            }
            return Ok(SubmitIn::Batch(BatchIn { tasks }));
        }
        let rest = FirstKeyThen { first: Some(first), map };
        TaskIn::deserialize(de::value::MapAccessDeserializer::new(rest)).map(SubmitIn::One)
    }
}

/// A map whose first key was already read: yields it again, then the rest of `map`.
struct FirstKeyThen<A> {
    first: Option<String>,
    map: A,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for FirstKeyThen<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        match self.first.take() {
            Some(key) => seed.deserialize(key.into_deserializer()).map(Some),
            None => self.map.next_key_seed(seed),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint().map(|n| n + usize::from(self.first.is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &str) -> Result<SubmitIn, String> {
        serde_json::from_str(body).map_err(|e| e.to_string())
    }

    #[test]
    fn one_task_whatever_the_order_of_its_fields() {
        for body in [
            r#"{"queue":"q","payload":{"a":[1,2]},"priority":3}"#,
            r#"{"payload":{"a":[1,2]},"priority":3,"queue":"q"}"#,
        ] {
            let Ok(SubmitIn::One(t)) = read(body) else { panic!("one task: {body}") };
            assert_eq!((t.queue.as_str(), t.priority), ("q", 3));
            assert_eq!(t.payload.expect("payload").get(), r#"{"a":[1,2]}"#, "the payload is kept raw");
        }
    }

    #[test]
    fn a_batch() {
        let Ok(SubmitIn::Batch(b)) = read(r#"{"tasks":[{"queue":"a"},{"queue":"b","kind":"k"}]}"#) else {
            panic!("a batch")
        };
        let names: Vec<_> = b.tasks.iter().map(|t| (t.queue.as_str(), t.kind.as_str())).collect();
        assert_eq!(names, [("a", ""), ("b", "k")]);
    }

    #[test]
    fn mixed_or_incomplete_bodies_are_refused_with_the_field_named() {
        let err = read(r#"{"tasks":[],"queue":"q"}"#).expect_err("batch with more");
        assert!(err.contains("only the field `tasks`") && err.contains("`queue`"), "{err}");
        let err = read(r#"{"queue":"q","tasks":[]}"#).expect_err("task with tasks");
        assert!(err.contains("unknown field `tasks`"), "{err}");
        let err = read(r#"{"kind":"k"}"#).expect_err("no queue");
        assert!(err.contains("missing field `queue`"), "{err}");
        let err = read("{}").expect_err("empty");
        assert!(err.contains("missing field `queue`"), "{err}");
        let err = read(r#"{"tasks":[{"queue":"a","bogus":1}]}"#).expect_err("unknown inner field");
        assert!(err.contains("unknown field `bogus`"), "{err}");
        let err = read(r#"{"queue":"q","priority":"high"}"#).expect_err("wrong type");
        assert!(err.contains("invalid type"), "{err}");
        assert!(read("[1]").is_err() && read("\"q\"").is_err());
    }
}
