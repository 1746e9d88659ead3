//! Sync tokens: the position of every stream a client has seen, opaque to
//! clients (`s<events>_<account data>_<receipts>_<typing>_<to-device>_<presence>`).

use crate::error::{Error, Result};

/// Positions in each stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncToken {
    pub events: i64,
    pub account_data: i64,
    pub receipts: i64,
    pub typing: i64,
    pub to_device: i64,
    pub presence: i64,
}

impl SyncToken {
    /// Parses a token a client sent back.
    pub fn parse(token: &str) -> Result<SyncToken> {
        let malformed = || Error::InvalidParam("malformed sync token".into());
        let positions: Vec<i64> = token
            .strip_prefix('s')
            .ok_or_else(malformed)?
            .split('_')
            .map(|p| p.parse().map_err(|_| malformed()))
            .collect::<Result<_>>()?;
        let [events, account_data, receipts, typing, to_device, presence] = positions[..] else {
            return Err(malformed());
        };
        Ok(SyncToken {
            events,
            account_data,
            receipts,
            typing,
            to_device,
            presence,
        })
    }
}

impl std::fmt::Display for SyncToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let SyncToken {
            events,
            account_data,
            receipts,
            typing,
            to_device,
            presence,
        } = self;
        write!(
            f,
            "s{events}_{account_data}_{receipts}_{typing}_{to_device}_{presence}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let token = SyncToken {
            events: 42,
            account_data: 7,
            receipts: 3,
            typing: 9,
            to_device: 5,
            presence: 2,
        };
        assert_eq!(token.to_string(), "s42_7_3_9_5_2");
        assert_eq!(SyncToken::parse("s42_7_3_9_5_2").unwrap(), token);
        for bad in [
            "",
            "s42",
            "s42_7_3_9_5",
            "t42_7_3_9_5_2",
            "s4x_7_3_9_5_2",
            "s42_7_3_9_5_",
            "s1_2_3_4_5_6_7",
        ] {
            assert!(SyncToken::parse(bad).is_err(), "{bad}");
        }
    }
}
