//! Paging for the list operations: `maxResults` and opaque `nextToken`s.
//!
//! A token names the sort key of the last item a page returned; the next
//! page starts after it. Items are ordered by a key that the caller chooses
//! and that is stable for the resource (an id, or a creation time and an
//! id), so pages neither repeat nor skip items when others come and go.
//! Tokens are base64url text with a version prefix; they are opaque to
//! clients and checked when decoded.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::error::ApiError;
use crate::validation::{message, FieldError};

/// The largest page the model allows, and the size of a page by default.
pub const MAX_RESULTS: usize = 50;

/// What every token starts with once decoded.
const PREFIX: &str = "hearth-page-v1:";

/// Where a page starts and how long it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    limit: usize,
    after: Option<String>,
}

/// One page of items and the token for the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The items on this page.
    pub items: Vec<T>,
    /// The token for the next page; `None` on the last.
    pub next_token: Option<String>,
}

impl PageRequest {
    /// Reads a list operation's `maxResults` and `nextToken`.
    ///
    /// # Errors
    ///
    /// A `ValidationException` naming `nextToken` when the token was not
    /// made by [`encode_token`].
    pub fn new(max_results: Option<i32>, next_token: Option<&str>) -> Result<Self, ApiError> {
        let limit = max_results
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0)
            .map_or(MAX_RESULTS, |n| n.min(MAX_RESULTS));
        let after = next_token.map(decode_token).transpose()?;
        Ok(Self { limit, after })
    }

    /// The page of `items` this request asks for, ordered by `key`.
    pub fn apply<T, K>(&self, items: impl IntoIterator<Item = T>, key: K) -> Page<T>
    where
        K: Fn(&T) -> String,
    {
        let mut keyed: Vec<(String, T)> =
            items.into_iter().map(|item| (key(&item), item)).collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));

        let mut rest = keyed
            .into_iter()
            .filter(|(k, _)| self.after.as_ref().is_none_or(|after| k > after))
            .peekable();

        let mut page = Vec::with_capacity(self.limit);
        let mut last_key = None;
        while page.len() < self.limit {
            let Some((k, item)) = rest.next() else { break };
            last_key = Some(k);
            page.push(item);
        }

        let next_token = match (rest.peek(), last_key) {
            (Some(_), Some(last)) => Some(encode_token(&last)),
            _ => None,
        };
        Page {
            items: page,
            next_token,
        }
    }
}

/// The token for a page that starts after `key`.
pub fn encode_token(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{PREFIX}{key}"))
}

/// The key a token names.
///
/// # Errors
///
/// A `ValidationException` naming `nextToken` when the token is not one
/// [`encode_token`] made.
pub fn decode_token(token: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(PREFIX).map(str::to_owned))
        .ok_or_else(|| ApiError::validation(message(&[invalid_token()])))
}

/// The violation reported for a token that does not decode.
pub(crate) fn invalid_token() -> FieldError {
    FieldError::new(
        "nextToken",
        "Member must be a token returned by a previous call",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_every_item_once() {
        let items: Vec<u32> = (0..7).collect();
        let key = |n: &u32| format!("{n:04}");
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = PageRequest::new(Some(3), token.as_deref()).unwrap();
            let page = request.apply(items.clone(), key);
            seen.extend(page.items);
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(seen, items);
    }

    #[test]
    fn the_last_full_page_has_no_token() {
        let page = PageRequest::new(Some(2), None)
            .unwrap()
            .apply(vec!["a", "b"], |s| s.to_string());
        assert_eq!(page.next_token, None);
    }

    #[test]
    fn foreign_tokens_are_refused_naming_the_field() {
        let error = PageRequest::new(None, Some("not-a-token")).unwrap_err();
        assert!(error.to_string().contains("'nextToken'"));
    }
}
