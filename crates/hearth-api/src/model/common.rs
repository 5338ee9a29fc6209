//! Shapes shared by several resources: timestamps, string maps, the empty
//! `Unit` structure and the macro that writes the model's string enums.
//!
//! Timestamps have no `timestampFormat` in the model, so rest-json's default
//! applies to bodies: epoch seconds as a JSON number, with a fraction when the
//! instant is not a whole second.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Key-value tags attached to a resource (`Tags`).
pub type Tags = BTreeMap<String, String>;

/// Environment variables of an image (`EnvironmentVariableMap`).
pub type EnvironmentVariables = BTreeMap<String, String>;

/// Writes a model string enum: the variants, their wire names, `VALUES` in the
/// model's order, `as_str` and `Display`.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $wire:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[serde(rename = $wire)]
                $variant,
            )+
        }

        impl $name {
            /// Every wire value, in the model's order.
            pub const VALUES: &'static [&'static str] = &[$($wire),+];

            /// The value as it appears on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use wire_enum;

wire_enum! {
    /// A CPU architecture (`Architecture`).
    Architecture {
        /// 64-bit Arm.
        Arm64 = "ARM_64",
        /// 64-bit x86.
        X86_64 = "X86_64",
    }
}

/// The empty structure (`Unit`), serialized as `{}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {}

/// A point in time with millisecond precision (`Timestamp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    millis: i64,
}

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// A timestamp from milliseconds since the Unix epoch.
    pub fn from_unix_millis(millis: i64) -> Self {
        Self { millis }
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> i64 {
        self.millis
    }

    /// Whole seconds since the Unix epoch, rounded down.
    pub fn unix_seconds(self) -> i64 {
        self.millis.div_euclid(1000)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        let millis = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
        };
        Self { millis }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(ts: Timestamp) -> Self {
        let magnitude = Duration::from_millis(ts.millis.unsigned_abs());
        if ts.millis >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Whole seconds go out as integers so that strict clients see the
        // plainest form; fractions keep their milliseconds.
        if self.millis % 1000 == 0 {
            serializer.serialize_i64(self.millis / 1000)
        } else {
            serializer.serialize_f64(self.millis as f64 / 1000.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EpochSecondsVisitor)
    }
}

/// Reads epoch seconds given as an integer or a float.
struct EpochSecondsVisitor;

impl Visitor<'_> for EpochSecondsVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("epoch seconds as a number")
    }

    fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Timestamp, E> {
        secs.checked_mul(1000)
            .map(Timestamp::from_unix_millis)
            .ok_or_else(|| E::custom("timestamp out of range"))
    }

    fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Timestamp, E> {
        let secs = i64::try_from(secs).map_err(|_| E::custom("timestamp out of range"))?;
        self.visit_i64(secs)
    }

    fn visit_f64<E: de::Error>(self, secs: f64) -> Result<Timestamp, E> {
        let millis = (secs * 1000.0).round();
        if !millis.is_finite() || millis.abs() > i64::MAX as f64 {
            return Err(E::custom("timestamp out of range"));
        }
        Ok(Timestamp::from_unix_millis(millis as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_serialize_as_integers() {
        let ts = Timestamp::from_unix_millis(1_700_000_000_000);
        assert_eq!(serde_json::to_string(&ts).unwrap(), "1700000000");
    }

    #[test]
    fn fractions_keep_milliseconds() {
        let ts = Timestamp::from_unix_millis(1_700_000_000_250);
        assert_eq!(serde_json::to_string(&ts).unwrap(), "1700000000.25");
        let back: Timestamp = serde_json::from_str("1700000000.25").unwrap();
        assert_eq!(back, ts);
    }

    #[test]
    fn enums_use_the_model_names() {
        assert_eq!(
            serde_json::to_string(&Architecture::Arm64).unwrap(),
            "\"ARM_64\""
        );
        assert_eq!(Architecture::VALUES, &["ARM_64", "X86_64"]);
    }
}
