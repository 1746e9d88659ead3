//! `GET /sync`.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use poem::web::Data;
use poem_openapi::{Object, OpenApi, param::Query, payload::Json};
use serde_json::Value;

use super::{AccessToken, Tag};
use crate::{
    ephemeral::PRESENCE_STATES,
    error::{Error, Result},
    rooms::EventFilter,
    state::AppState,
    sync::{RoomUpdate, SyncFilter, SyncRequest, SyncToken},
};

#[derive(Object, Default)]
struct Events {
    events: Vec<Value>,
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct TimelineBody {
    events: Vec<Value>,
    limited: bool,
    prev_batch: Option<String>,
}

#[derive(Object)]
struct UnreadNotifications {
    highlight_count: u64,
    notification_count: u64,
}

#[derive(Object)]
struct JoinedRoom {
    timeline: TimelineBody,
    state: Events,
    account_data: Events,
    ephemeral: Events,
    unread_notifications: UnreadNotifications,
}

#[derive(Object)]
struct InvitedRoom {
    invite_state: Events,
}

#[derive(Object)]
struct LeftRoom {
    timeline: TimelineBody,
    state: Events,
    account_data: Events,
}

#[derive(Object)]
struct RoomsBody {
    join: BTreeMap<String, JoinedRoom>,
    invite: BTreeMap<String, InvitedRoom>,
    leave: BTreeMap<String, LeftRoom>,
    knock: BTreeMap<String, Value>,
}

#[derive(Object)]
struct SyncResponse {
    /// Pass as `since` to get what happens next.
    next_batch: String,
    rooms: RoomsBody,
    account_data: Events,
    presence: Events,
    to_device: Events,
}

fn timeline(update: &mut RoomUpdate) -> TimelineBody {
    TimelineBody {
        events: std::mem::take(&mut update.timeline.events),
        limited: update.timeline.limited,
        prev_batch: Some(std::mem::take(&mut update.timeline.prev_batch)),
    }
}

fn strings(filter: &Value, key: &str) -> Option<Vec<String>> {
    filter.get(key)?.as_array().map(|items| {
        items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect()
    })
}

/// Reads the parts of a `Filter` that sync applies.
fn sync_filter(filter: &Value) -> SyncFilter {
    let room = &filter["room"];
    let timeline = &room["timeline"];
    SyncFilter {
        timeline_limit: timeline
            .get("limit")
            .and_then(Value::as_u64)
            .and_then(|l| usize::try_from(l).ok()),
        timeline: EventFilter {
            types: strings(timeline, "types"),
            not_types: strings(timeline, "not_types").unwrap_or_default(),
            senders: strings(timeline, "senders"),
            not_senders: strings(timeline, "not_senders").unwrap_or_default(),
            limit: None,
            lazy_load_members: false,
        },
        lazy_load_members: room["state"]["lazy_load_members"]
            .as_bool()
            .unwrap_or(false),
        include_leave: room["include_leave"].as_bool().unwrap_or(false),
    }
}

pub struct SyncApi;

#[OpenApi(tag = "Tag::Sync")]
impl SyncApi {
    /// # GET /_matrix/client/v3/sync
    /// What changed since `since` (everything, without it); waits up to
    /// `timeout` milliseconds for something to happen.
    #[oai(
        path = "/_matrix/client/v3/sync",
        method = "get",
        operation_id = "sync"
    )]
    #[allow(clippy::too_many_arguments)] // one argument per query parameter of the spec
    async fn sync(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        since: Query<Option<String>>,
        timeout: Query<Option<u64>>,
        full_state: Query<Option<bool>>,
        filter: Query<Option<String>>,
        set_presence: Query<Option<String>>,
    ) -> Result<Json<SyncResponse>> {
        if let Some(presence) = set_presence.0.as_deref()
            && !PRESENCE_STATES.contains(&presence)
        {
            return Err(Error::InvalidParam(format!("unknown presence {presence}")));
        }
        state
            .presence
            .on_sync(auth.0.user_id.as_str(), set_presence.0.as_deref())
            .await?;
        let user_id = auth.0.user_id.as_str();
        let filter = match filter.0.as_deref() {
            None => SyncFilter::default(),
            Some(inline) if inline.trim_start().starts_with('{') => {
                let value: Value = serde_json::from_str(inline)
                    .map_err(|e| Error::InvalidParam(format!("filter is not valid JSON: {e}")))?;
                sync_filter(&value)
            }
            Some(id) => {
                let stored = state
                    .filters
                    .get(user_id, id)
                    .await?
                    .ok_or_else(|| Error::NotFound("unknown filter".into()))?;
                sync_filter(&stored)
            }
        };
        let request = SyncRequest {
            counts_and_presence: true,
            device_id: auth.0.device_id.to_string(),
            since: since.0.as_deref().map(SyncToken::parse).transpose()?,
            timeout: Duration::from_millis(timeout.0.unwrap_or(0)),
            full_state: full_state.0.unwrap_or(false),
            filter,
        };
        let mut result = state.syncer.sync(user_id, &request).await?;
        let join = std::mem::take(&mut result.join)
            .into_iter()
            .map(|(room, mut update)| {
                let body = JoinedRoom {
                    timeline: timeline(&mut update),
                    state: Events {
                        events: update.state,
                    },
                    account_data: Events {
                        events: update.account_data,
                    },
                    ephemeral: Events {
                        events: update.ephemeral,
                    },
                    unread_notifications: UnreadNotifications {
                        highlight_count: 0,
                        notification_count: u64::try_from(update.unread).unwrap_or_default(),
                    },
                };
                (room, body)
            })
            .collect();
        let leave = std::mem::take(&mut result.leave)
            .into_iter()
            .map(|(room, mut update)| {
                let body = LeftRoom {
                    timeline: timeline(&mut update),
                    state: Events {
                        events: update.state,
                    },
                    account_data: Events {
                        events: update.account_data,
                    },
                };
                (room, body)
            })
            .collect();
        let invite = std::mem::take(&mut result.invite)
            .into_iter()
            .map(|(room, events)| {
                (
                    room,
                    InvitedRoom {
                        invite_state: Events { events },
                    },
                )
            })
            .collect();
        Ok(Json(SyncResponse {
            next_batch: result.next_batch,
            rooms: RoomsBody {
                join,
                invite,
                leave,
                knock: BTreeMap::new(),
            },
            account_data: Events {
                events: result.account_data,
            },
            presence: Events {
                events: result.presence,
            },
            to_device: Events {
                events: result.to_device,
            },
        }))
    }
}
