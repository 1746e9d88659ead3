//! User profiles: display name and avatar URL.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{Object, OpenApi, param::Path, payload::Json};

use super::{AccessToken, Tag, parse_user_id, session::Empty};
use crate::{
    accounts::Profile,
    error::{Error, Result},
    state::AppState,
};

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct ProfileBody {
    displayname: Option<String>,
    avatar_url: Option<String>,
}

#[derive(Object)]
struct Displayname {
    #[oai(deserialize_with = "crate::api::strings_only")]
    displayname: Option<String>,
}

#[derive(Object)]
struct AvatarUrl {
    #[oai(deserialize_with = "crate::api::strings_only")]
    avatar_url: Option<String>,
}

pub struct ProfileApi;

/// The profile of a local user, or of a remote one as their server tells it.
async fn any_profile(state: &AppState, user_id: &str) -> Result<Profile> {
    let user_id = parse_user_id(user_id)?;
    if user_id.server_name().as_str() == state.config.server_name {
        state.accounts.profile(user_id.as_str()).await
    } else {
        state.remote.profile(&user_id).await
    }
}

#[OpenApi(tag = "Tag::Profile")]
impl ProfileApi {
    /// # GET /_matrix/client/v3/profile/{userId}
    /// A user's display name and avatar.
    #[oai(
        path = "/_matrix/client/v3/profile/:user_id",
        method = "get",
        operation_id = "getProfile"
    )]
    async fn profile(
        &self,
        state: Data<&Arc<AppState>>,
        user_id: Path<String>,
    ) -> Result<Json<ProfileBody>> {
        let profile = any_profile(&state, &user_id.0).await?;
        Ok(Json(ProfileBody {
            displayname: profile.displayname,
            avatar_url: profile.avatar_url,
        }))
    }

    /// # GET /_matrix/client/v3/profile/{userId}/displayname
    #[oai(
        path = "/_matrix/client/v3/profile/:user_id/displayname",
        method = "get",
        operation_id = "getDisplayname"
    )]
    async fn displayname(
        &self,
        state: Data<&Arc<AppState>>,
        user_id: Path<String>,
    ) -> Result<Json<Displayname>> {
        let profile = any_profile(&state, &user_id.0).await?;
        // v1.19: a profile field that is not set is a 404, not a null value.
        let displayname = profile
            .displayname
            .ok_or_else(|| Error::NotFound("this user has no display name".into()))?;
        Ok(Json(Displayname {
            displayname: Some(displayname),
        }))
    }

    /// # PUT /_matrix/client/v3/profile/{userId}/displayname
    /// Sets the logged-in user's display name.
    #[oai(
        path = "/_matrix/client/v3/profile/:user_id/displayname",
        method = "put",
        operation_id = "setDisplayname"
    )]
    async fn set_displayname(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        user_id: Path<String>,
        body: Json<Displayname>,
    ) -> Result<Json<Empty>> {
        let name = body.0.displayname;
        state
            .accounts
            .set_displayname(
                &auth.0,
                parse_user_id(&user_id.0)?.as_str(),
                name.as_deref(),
            )
            .await?;
        Ok(Json(Empty {}))
    }

    /// # GET /_matrix/client/v3/profile/{userId}/avatar_url
    #[oai(
        path = "/_matrix/client/v3/profile/:user_id/avatar_url",
        method = "get",
        operation_id = "getAvatarUrl"
    )]
    async fn avatar_url(
        &self,
        state: Data<&Arc<AppState>>,
        user_id: Path<String>,
    ) -> Result<Json<AvatarUrl>> {
        let profile = any_profile(&state, &user_id.0).await?;
        let avatar_url = profile
            .avatar_url
            .ok_or_else(|| Error::NotFound("this user has no avatar".into()))?;
        Ok(Json(AvatarUrl {
            avatar_url: Some(avatar_url),
        }))
    }

    /// # PUT /_matrix/client/v3/profile/{userId}/avatar_url
    /// Sets the logged-in user's avatar (an `mxc://` URI).
    #[oai(
        path = "/_matrix/client/v3/profile/:user_id/avatar_url",
        method = "put",
        operation_id = "setAvatarUrl"
    )]
    async fn set_avatar_url(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        user_id: Path<String>,
        body: Json<AvatarUrl>,
    ) -> Result<Json<Empty>> {
        let url = body.0.avatar_url;
        state
            .accounts
            .set_avatar_url(&auth.0, parse_user_id(&user_id.0)?.as_str(), url.as_deref())
            .await?;
        Ok(Json(Empty {}))
    }
}
