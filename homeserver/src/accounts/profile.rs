//! Profiles: display name and avatar.

use super::{Accounts, check_display_name};
use crate::{
    auth::Authed,
    error::{Error, Result},
};

/// A user's public profile.
#[derive(Debug, Default)]
pub struct Profile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

impl Accounts {
    /// `GET /profile/{userId}`: the profile of a local user.
    pub async fn profile(&self, user_id: &str) -> Result<Profile> {
        let user = self
            .store
            .user(user_id)
            .await?
            .ok_or_else(|| Error::NotFound("no profile for this user".into()))?;
        Ok(Profile {
            displayname: user.displayname,
            avatar_url: user.avatar_url,
        })
    }

    fn own_profile(authed: &Authed, user_id: &str) -> Result<()> {
        if authed.user_id.as_str() == user_id {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "you may only change your own profile".into(),
            ))
        }
    }

    /// `PUT /profile/{userId}/displayname`.
    pub async fn set_displayname(
        &self,
        authed: &Authed,
        user_id: &str,
        name: Option<&str>,
    ) -> Result<()> {
        Self::own_profile(authed, user_id)?;
        check_display_name(name)?;
        self.store
            .set_displayname(user_id, name.filter(|n| !n.is_empty()))
            .await
    }

    /// `PUT /profile/{userId}/avatar_url`.
    pub async fn set_avatar_url(
        &self,
        authed: &Authed,
        user_id: &str,
        url: Option<&str>,
    ) -> Result<()> {
        Self::own_profile(authed, user_id)?;
        let url = url.filter(|u| !u.is_empty());
        if let Some(url) = url
            && (!url.starts_with("mxc://") || url.len() > 1024 || url.contains(char::is_whitespace))
        {
            return Err(Error::InvalidParam(
                "avatar_url must be an mxc:// URI".into(),
            ));
        }
        self.store.set_avatar_url(user_id, url).await
    }
}
