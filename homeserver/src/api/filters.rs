//! Filters: uploaded once, then named by id in `/sync`.

use std::{collections::BTreeMap, sync::Arc};

use poem::web::Data;
use poem_openapi::{Object, OpenApi, param::Path, payload::Json};
use serde_json::Value;

use super::{AccessToken, Tag};
use crate::{
    error::{Error, Result},
    state::AppState,
};

/// A `Filter` object as the specification defines it (`event_fields`,
/// `event_format`, `presence`, `account_data`, `room`); other fields are
/// kept as they are.
type FilterBody = BTreeMap<String, Value>;

#[derive(Object)]
struct FilterCreated {
    /// The id to pass as `filter` to `/sync`; an opaque string.
    filter_id: String,
}

pub struct FiltersApi;

#[OpenApi(tag = "Tag::Filters")]
impl FiltersApi {
    /// # POST /_matrix/client/v3/user/{userId}/filter
    /// Uploads a filter of the caller's (filters never change once stored).
    /// Known fields of the wrong type, an `event_format` other than `client`
    /// or `federation`, or a `limit` below 1 are `M_BAD_JSON`.
    #[oai(
        path = "/_matrix/client/v3/user/:user_id/filter",
        method = "post",
        operation_id = "defineFilter"
    )]
    async fn define_filter(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        user_id: Path<String>,
        body: Json<FilterBody>,
    ) -> Result<Json<FilterCreated>> {
        let filter = Value::Object(body.0.into_iter().collect());
        let filter_id = state.filters.create(&auth.0, &user_id.0, filter).await?;
        Ok(Json(FilterCreated { filter_id }))
    }

    /// # GET /_matrix/client/v3/user/{userId}/filter/{filterId}
    /// One of the caller's filters, as uploaded.
    #[oai(
        path = "/_matrix/client/v3/user/:user_id/filter/:filter_id",
        method = "get",
        operation_id = "getFilter"
    )]
    async fn filter(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        user_id: Path<String>,
        filter_id: Path<String>,
    ) -> Result<Json<FilterBody>> {
        match state
            .filters
            .get_own(&auth.0, &user_id.0, &filter_id.0)
            .await?
        {
            Value::Object(filter) => Ok(Json(filter.into_iter().collect())),
            _ => Err(Error::Internal("stored filter is not an object".into())),
        }
    }
}
