//! Account data: the user's own configuration, global or per room.

use std::{collections::BTreeMap, sync::Arc};

use poem::web::Data;
use poem_openapi::{OpenApi, param::Path, payload::Json};
use serde_json::{Map, Value};

use super::{AccessToken, Tag, session::Empty};
use crate::{error::Result, state::AppState};

/// Account data content: any JSON object.
type Content = BTreeMap<String, Value>;

pub struct AccountDataApi;

#[OpenApi(tag = "Tag::UserData")]
impl AccountDataApi {
    /// # PUT /_matrix/client/v3/user/{userId}/account_data/{type}
    /// Sets the caller's global account data of a type (not `m.fully_read` or
    /// `m.push_rules`, which the server manages: 405).
    #[oai(
        path = "/_matrix/client/v3/user/:user_id/account_data/:type",
        method = "put",
        operation_id = "setAccountData"
    )]
    async fn set_account_data(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        user_id: Path<String>,
        #[oai(name = "type")] data_type: Path<String>,
        body: Json<Content>,
    ) -> Result<Json<Empty>> {
        let content: Map<String, Value> = body.0.into_iter().collect();
        state
            .account_data
            .set(&auth.0, &user_id.0, None, &data_type.0, &content)
            .await?;
        Ok(Json(Empty {}))
    }

    /// # GET /_matrix/client/v3/user/{userId}/account_data/{type}
    /// The caller's global account data of a type.
    #[oai(
        path = "/_matrix/client/v3/user/:user_id/account_data/:type",
        method = "get",
        operation_id = "getAccountData"
    )]
    async fn account_data(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        user_id: Path<String>,
        #[oai(name = "type")] data_type: Path<String>,
    ) -> Result<Json<Content>> {
        let content = state
            .account_data
            .get(&auth.0, &user_id.0, None, &data_type.0)
            .await?;
        Ok(Json(content.into_iter().collect()))
    }

    /// # PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}
    /// Sets the caller's account data of a type for one room.
    #[oai(
        path = "/_matrix/client/v3/user/:user_id/rooms/:room_id/account_data/:type",
        method = "put",
        operation_id = "setAccountDataPerRoom"
    )]
    async fn set_room_account_data(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        user_id: Path<String>,
        room_id: Path<String>,
        #[oai(name = "type")] data_type: Path<String>,
        body: Json<Content>,
    ) -> Result<Json<Empty>> {
        let content: Map<String, Value> = body.0.into_iter().collect();
        state
            .account_data
            .set(
                &auth.0,
                &user_id.0,
                Some(&room_id.0),
                &data_type.0,
                &content,
            )
            .await?;
        Ok(Json(Empty {}))
    }

    /// # GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}
    /// The caller's account data of a type for one room (no fallback to the
    /// global data of that type).
    #[oai(
        path = "/_matrix/client/v3/user/:user_id/rooms/:room_id/account_data/:type",
        method = "get",
        operation_id = "getAccountDataPerRoom"
    )]
    async fn room_account_data(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        user_id: Path<String>,
        room_id: Path<String>,
        #[oai(name = "type")] data_type: Path<String>,
    ) -> Result<Json<Content>> {
        let content = state
            .account_data
            .get(&auth.0, &user_id.0, Some(&room_id.0), &data_type.0)
            .await?;
        Ok(Json(content.into_iter().collect()))
    }
}
