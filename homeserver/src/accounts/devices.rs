//! Devices of the logged-in user: list, inspect, rename, delete.

use super::{Accounts, check_display_name};
use crate::{
    auth::Authed,
    error::{Error, Result},
    storage::DeviceRow,
    uia::{AuthSubmission, Purpose},
};

impl Accounts {
    /// `GET /devices`.
    pub async fn devices(&self, authed: &Authed) -> Result<Vec<DeviceRow>> {
        self.store.devices(authed.user_id.as_str()).await
    }

    /// `GET /devices/{deviceId}`.
    pub async fn device(&self, authed: &Authed, device_id: &str) -> Result<DeviceRow> {
        self.store
            .device(authed.user_id.as_str(), device_id)
            .await?
            .ok_or_else(|| Error::NotFound("unknown device".into()))
    }

    /// `PUT /devices/{deviceId}`.
    pub async fn rename_device(
        &self,
        authed: &Authed,
        device_id: &str,
        name: Option<&str>,
    ) -> Result<()> {
        check_display_name(name)?;
        let user_id = authed.user_id.as_str();
        let found = match name {
            // Spec: "If not given, the display name is unchanged."
            None => self.store.device(user_id, device_id).await?.is_some(),
            Some(_) => {
                self.store
                    .set_device_display_name(user_id, device_id, name)
                    .await?
            }
        };
        if found {
            Ok(())
        } else {
            Err(Error::NotFound("unknown device".into()))
        }
    }

    /// `DELETE /devices/{deviceId}` and `POST /delete_devices`.
    pub async fn delete_devices(
        &self,
        authed: &Authed,
        device_ids: &[String],
        auth: Option<AuthSubmission>,
    ) -> Result<()> {
        let user_id = authed.user_id.as_str();
        self.uia()
            .authenticate(Purpose::DeleteDevices, Some(user_id), auth)
            .await?;
        let ended = self.store.delete_devices(user_id, device_ids).await?;
        self.sessions.forget(&ended);
        Ok(())
    }
}
