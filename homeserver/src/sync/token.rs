//! Sync tokens: the position of every stream a client has seen, opaque to
//! clients (`s<events>_<account data>_<receipts>_<typing>`).

use crate::error::{Error, Result};

/// Positions in each stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncToken {
    pub events: i64,
    pub account_data: i64,
    pub receipts: i64,
    pub typing: i64,
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
        let [events, account_data, receipts, typing] = positions[..] else {
            return Err(malformed());
        };
        Ok(SyncToken {
            events,
            account_data,
            receipts,
            typing,
        })
    }
}

impl std::fmt::Display for SyncToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "s{}_{}_{}_{}",
            self.events, self.account_data, self.receipts, self.typing
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
        };
        assert_eq!(token.to_string(), "s42_7_3_9");
        assert_eq!(SyncToken::parse("s42_7_3_9").unwrap(), token);
        for bad in [
            "",
            "s42",
            "s42_7",
            "t42_7_3_9",
            "s4x_7_3_9",
            "s42_7_3_",
            "s1_2_3_4_5",
        ] {
            assert!(SyncToken::parse(bad).is_err(), "{bad}");
        }
    }
}
