//! Sync tokens: the position of every stream a client has seen, opaque to
//! clients (`s<events>_<account data>`).

use crate::error::{Error, Result};

/// Positions in each stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncToken {
    pub events: i64,
    pub account_data: i64,
}

impl SyncToken {
    /// Parses a token a client sent back.
    pub fn parse(token: &str) -> Result<SyncToken> {
        let malformed = || Error::InvalidParam("malformed sync token".into());
        let (events, account_data) = token
            .strip_prefix('s')
            .and_then(|t| t.split_once('_'))
            .ok_or_else(malformed)?;
        Ok(SyncToken {
            events: events.parse().map_err(|_| malformed())?,
            account_data: account_data.parse().map_err(|_| malformed())?,
        })
    }
}

impl std::fmt::Display for SyncToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s{}_{}", self.events, self.account_data)
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
        };
        assert_eq!(token.to_string(), "s42_7");
        assert_eq!(SyncToken::parse("s42_7").unwrap(), token);
        for bad in ["", "s42", "t42_7", "s4x_7", "s42_"] {
            assert!(SyncToken::parse(bad).is_err(), "{bad}");
        }
    }
}
