//! The logged-in user's devices.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{Object, OpenApi, param::Path, payload::Json};

use super::{
    AccessToken, Tag,
    account::{AuthData, submission},
    session::Empty,
};
use crate::{error::Result, state::AppState, storage::DeviceRow};

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct Device {
    device_id: String,
    display_name: Option<String>,
    last_seen_ip: Option<String>,
    last_seen_ts: Option<i64>,
}

impl From<DeviceRow> for Device {
    fn from(row: DeviceRow) -> Self {
        Device {
            device_id: row.device_id,
            display_name: row.display_name,
            last_seen_ip: row.last_seen_ip,
            last_seen_ts: row.last_seen_ts,
        }
    }
}

#[derive(Object)]
struct DeviceList {
    devices: Vec<Device>,
}

#[derive(Object)]
struct RenameDevice {
    #[oai(deserialize_with = "crate::api::strings_only")]
    display_name: Option<String>,
}

#[derive(Object)]
struct DeleteDevice {
    auth: Option<AuthData>,
}

#[derive(Object)]
struct DeleteDevices {
    #[oai(deserialize_with = "crate::api::strings_only")]
    devices: Vec<String>,
    auth: Option<AuthData>,
}

pub struct DevicesApi;

#[OpenApi(tag = "Tag::Devices")]
impl DevicesApi {
    /// # GET /_matrix/client/v3/devices
    /// All devices of the logged-in user.
    #[oai(
        path = "/_matrix/client/v3/devices",
        method = "get",
        operation_id = "getDevices"
    )]
    async fn devices(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
    ) -> Result<Json<DeviceList>> {
        let devices = state.accounts.devices(&auth.0).await?;
        Ok(Json(DeviceList {
            devices: devices.into_iter().map(Device::from).collect(),
        }))
    }

    /// # GET /_matrix/client/v3/devices/{deviceId}
    /// One device.
    #[oai(
        path = "/_matrix/client/v3/devices/:device_id",
        method = "get",
        operation_id = "getDevice"
    )]
    async fn device(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        device_id: Path<String>,
    ) -> Result<Json<Device>> {
        Ok(Json(
            state.accounts.device(&auth.0, &device_id.0).await?.into(),
        ))
    }

    /// # PUT /_matrix/client/v3/devices/{deviceId}
    /// Renames a device.
    #[oai(
        path = "/_matrix/client/v3/devices/:device_id",
        method = "put",
        operation_id = "updateDevice"
    )]
    async fn rename(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        device_id: Path<String>,
        body: Json<RenameDevice>,
    ) -> Result<Json<Empty>> {
        let name = body.0.display_name;
        state
            .accounts
            .rename_device(&auth.0, &device_id.0, name.as_deref())
            .await?;
        Ok(Json(Empty {}))
    }

    /// # DELETE /_matrix/client/v3/devices/{deviceId}
    /// Deletes a device and ends its session (user-interactive authentication).
    #[oai(
        path = "/_matrix/client/v3/devices/:device_id",
        method = "delete",
        operation_id = "deleteDevice"
    )]
    async fn delete(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        device_id: Path<String>,
        body: Json<Option<DeleteDevice>>,
    ) -> Result<Json<Empty>> {
        let uia = submission(body.0.and_then(|b| b.auth))?;
        state
            .accounts
            .delete_devices(&auth.0, &[device_id.0], uia)
            .await?;
        Ok(Json(Empty {}))
    }

    /// # POST /_matrix/client/v3/delete_devices
    /// Deletes several devices (user-interactive authentication).
    #[oai(
        path = "/_matrix/client/v3/delete_devices",
        method = "post",
        operation_id = "deleteDevices"
    )]
    async fn delete_many(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        body: Json<DeleteDevices>,
    ) -> Result<Json<Empty>> {
        let body = body.0;
        let uia = submission(body.auth)?;
        state
            .accounts
            .delete_devices(&auth.0, &body.devices, uia)
            .await?;
        Ok(Json(Empty {}))
    }
}
