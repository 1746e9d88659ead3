// Interoperability test: the unmodified matrix-js-sdk against TeaTime's rooms
// and /sync. Two users run syncing MatrixClients (startClient) the way a chat
// app does; everything they learn about the other's actions arrives through
// their own /sync long-poll, observed through the SDK's events. The server is
// started by ./server.mjs; raw HTTP is used only to wait for GET /healthz.

import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";

import {
  ClientEvent,
  createClient,
  EventTimeline,
  EventType,
  Preset,
  RoomEvent,
  RoomMemberEvent,
  SyncState,
} from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

import { SERVER_NAME, server, startServer, stopServer } from "./server.mjs";

// Quiet by default: the SDK warns that the server lacks the legacy push rules
// the specification removed in v1.17, and its MatrixRTC manager logs an error
// for the state of every room it meets before the room is stored (with any
// server). Failures are reported by the assertions; MATRIX_SDK_LOG_LEVEL=debug
// shows everything.
const LOG_LEVEL = process.env.MATRIX_SDK_LOG_LEVEL || "silent";
logger.setLevel(LOG_LEVEL);
// Child loggers start at DEBUG whatever the root's level is.
logger.getChild("[MatrixRTCSessionManager]").setLevel(LOG_LEVEL);

const PASSWORD = "interop rooms password";
/** How long a client may take to see another client's action through /sync. */
const LIVE_MS = 5_000;

/** Every client started, so that `after` can stop them whatever happened. */
const started = [];

/** Registers a user with m.login.dummy UIA and returns the session. */
async function register(username) {
  const anon = createClient({ baseUrl: server.baseUrl });
  const session = await anon.registerRequest({
    username,
    password: PASSWORD,
    initial_device_display_name: `interop ${username}`,
    auth: { type: "m.login.dummy" },
  });
  assert.equal(session.user_id, `@${username}:${SERVER_NAME}`);
  return session;
}

/** A password login on a new device. */
function login(username, deviceName) {
  return createClient({ baseUrl: server.baseUrl }).loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user: username },
    password: PASSWORD,
    initial_device_display_name: deviceName,
  });
}

/**
 * A MatrixClient for the session, started with `startClient(opts)`; resolves
 * once the first sync is processed (PREPARED), fails on a sync ERROR.
 */
async function startedClient(session, opts) {
  const client = createClient({
    baseUrl: server.baseUrl,
    accessToken: session.access_token,
    userId: session.user_id,
    deviceId: session.device_id,
  });
  started.push(client);
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off(ClientEvent.Sync, onSync);
      reject(new Error(`${session.user_id}: no PREPARED sync within 15 s`));
    }, 15_000);
    function onSync(state, _prev, data) {
      if (state === SyncState.Prepared || state === SyncState.Syncing) {
        clearTimeout(timer);
        client.off(ClientEvent.Sync, onSync);
        resolve();
      } else if (state === SyncState.Error) {
        clearTimeout(timer);
        client.off(ClientEvent.Sync, onSync);
        reject(data?.error ?? new Error(`${session.user_id}: sync state ERROR`));
      }
    }
    client.on(ClientEvent.Sync, onSync);
  });
  await client.startClient(opts);
  await ready;
  return client;
}

/**
 * Resolves with `check()`'s first truthy result, checking now and whenever
 * the client emits one of `events`; rejects after `timeoutMs`.
 */
function waitUntil(client, events, check, what, timeoutMs = LIVE_MS) {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (settle, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      for (const event of events) client.off(event, attempt);
      settle(value);
    };
    function attempt() {
      try {
        const value = check();
        if (value) finish(resolve, value);
      } catch (err) {
        finish(reject, err);
      }
    }
    const timer = setTimeout(
      () => finish(reject, new Error(`${client.getUserId()}: timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    );
    for (const event of events) client.on(event, attempt);
    attempt();
  });
}

/**
 * The next 'Room.timeline' event of the client in `roomId` that `matches`,
 * as { event, toStartOfTimeline, data }. Call before causing the event.
 */
function nextTimelineEvent(client, roomId, matches, what, timeoutMs = LIVE_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off(RoomEvent.Timeline, onTimeline);
      reject(new Error(`${client.getUserId()}: no Room.timeline event within ${timeoutMs} ms: ${what}`));
    }, timeoutMs);
    function onTimeline(event, room, toStartOfTimeline, removed, data) {
      if (room?.roomId !== roomId || removed || !matches(event)) return;
      clearTimeout(timer);
      client.off(RoomEvent.Timeline, onTimeline);
      resolve({ event, toStartOfTimeline, data });
    }
    client.on(RoomEvent.Timeline, onTimeline);
  });
}

const MEMBERSHIP_EVENTS = [ClientEvent.Room, RoomEvent.MyMembership, RoomMemberEvent.Membership];

/** Waits until the client's own membership of the room is `membership`. */
function waitForMyMembership(client, roomId, membership) {
  return waitUntil(
    client,
    MEMBERSHIP_EVENTS,
    () => {
      const room = client.getRoom(roomId);
      return room?.getMyMembership() === membership ? room : null;
    },
    `own membership ${membership} in ${roomId}`,
  );
}

/** Waits until the client sees `userId`'s membership of the room as `membership`. */
function waitForMembership(client, roomId, userId, membership) {
  return waitUntil(
    client,
    MEMBERSHIP_EVENTS,
    () => client.getRoom(roomId)?.getMember(userId)?.membership === membership,
    `${userId} with membership ${membership} in ${roomId}`,
  );
}

/** The bodies of the m.room.message events of the room's live timeline, oldest first. */
function timelineBodies(room) {
  return room
    .getLiveTimeline()
    .getEvents()
    .filter((e) => e.getType() === EventType.RoomMessage)
    .map((e) => e.getContent().body);
}

describe("matrix-js-sdk against TeaTime: rooms and sync", () => {
  let aliceSession;
  let bobSession;
  /** alice's and bob's syncing clients. */
  let alice;
  let bob;
  let aliceId;
  let bobId;
  /** The direct message room of alice and bob. */
  let dmId;

  let failed = false;
  before(() => startServer(), { timeout: 40_000 });
  afterEach((t) => {
    if (!t.passed) failed = true;
  });
  after(async () => {
    for (const client of started) client.stopClient();
    await stopServer();
    if (failed) {
      console.error(`--- teatime output ---\n${server.output}`);
    }
  });

  test("two users' clients start and sync (PREPARED)", { timeout: 40_000 }, async () => {
    aliceSession = await register("alice");
    bobSession = await register("bob");
    aliceId = aliceSession.user_id;
    bobId = bobSession.user_id;
    alice = await startedClient(aliceSession, { initialSyncLimit: 20 });
    bob = await startedClient(bobSession, { initialSyncLimit: 20 });
    assert.deepEqual(alice.getRooms(), []);
    assert.deepEqual(bob.getRooms(), []);
    // The push rules fetched at startup are the spec's server defaults.
    const overrides = alice.pushRules?.global?.override?.map((r) => r.rule_id) ?? [];
    assert.ok(overrides.includes(".m.rule.master"), `push rules: ${JSON.stringify(alice.pushRules)}`);
  });

  test("alice starts a DM with bob like Element; bob sees the invite and joins", async () => {
    const { room_id } = await alice.createRoom({
      preset: Preset.TrustedPrivateChat,
      is_direct: true,
      invite: [bobId],
    });
    dmId = room_id;
    assert.match(dmId, /^!.+/);
    await alice.setAccountData(EventType.Direct, { [bobId]: [dmId] });

    // alice's own client sees the room joined, bob invited, and the m.direct data.
    await waitForMyMembership(alice, dmId, "join");
    await waitForMembership(alice, dmId, bobId, "invite");
    await waitUntil(
      alice,
      [ClientEvent.AccountData],
      () => alice.getAccountData(EventType.Direct)?.getContent()[bobId]?.includes(dmId),
      "m.direct account data naming the DM",
    );

    // bob's client sees the invite, marked as a DM from alice.
    const invited = await waitForMyMembership(bob, dmId, "invite");
    assert.equal(invited.getMember(bobId)?.membership, "invite");
    assert.equal(invited.getDMInviter(), aliceId, "the invite is is_direct, from alice");

    await bob.joinRoom(dmId);
    const joined = await waitForMyMembership(bob, dmId, "join");
    assert.equal(joined.getMember(aliceId)?.membership, "join");
    assert.equal(joined.getMember(bobId)?.membership, "join");
    assert.equal(joined.getJoinedMemberCount(), 2);
    // trusted_private_chat: invite-only, history shared, and the invitee gets
    // the creator's power: in room versions 12+ (TeaTime's default) creators
    // are infinitely powerful, so bob is one of the room's additional_creators
    // (createRoom: "the users specified in the invite parameter SHOULD also be
    // appended to additional_creators"). matrix-js-sdk 37.5 predates v12 and
    // reads power only from m.room.power_levels, so its RoomMember.powerLevel
    // says nothing here; the create event does.
    const state = joined.currentState;
    assert.equal(state.getStateEvents(EventType.RoomJoinRules, "")?.getContent().join_rule, "invite");
    assert.equal(state.getStateEvents(EventType.RoomHistoryVisibility, "")?.getContent().history_visibility, "shared");
    const create = state.getStateEvents(EventType.RoomCreate, "");
    assert.equal(create.getSender(), aliceId);
    assert.equal(create.getContent().room_version, "12");
    assert.deepEqual(create.getContent().additional_creators, [bobId]);

    // bob records the DM too, as Element does on accepting; his client gets it back.
    await bob.setAccountData(EventType.Direct, { [aliceId]: [dmId] });
    await waitUntil(
      bob,
      [ClientEvent.AccountData],
      () => bob.getAccountData(EventType.Direct)?.getContent()[aliceId]?.includes(dmId),
      "bob's m.direct account data",
    );
    // alice's client sees bob join.
    await waitForMembership(alice, dmId, bobId, "join");
  });

  test("messages arrive live through Room.timeline, both ways", async () => {
    const isText = (sender, body) => (e) =>
      e.getType() === EventType.RoomMessage && e.getSender() === sender && e.getContent().body === body;

    const bobSees = nextTimelineEvent(bob, dmId, isText(aliceId, "hello bob"), "alice's message");
    const sentAt = Date.now();
    const sent = await alice.sendTextMessage(dmId, "hello bob");
    assert.match(sent.event_id, /^\$/);
    const got = await bobSees;
    const latency = Date.now() - sentAt;
    assert.equal(got.event.getId(), sent.event_id);
    assert.equal(got.toStartOfTimeline, false);
    assert.equal(got.data.liveEvent, true, "delivered as a live event");
    assert.deepEqual(got.event.getContent(), { msgtype: "m.text", body: "hello bob" });
    assert.ok(latency < LIVE_MS, `took ${latency} ms`);

    const aliceSees = nextTimelineEvent(alice, dmId, isText(bobId, "hi alice"), "bob's reply");
    const reply = await bob.sendTextMessage(dmId, "hi alice");
    const back = await aliceSees;
    assert.equal(back.event.getId(), reply.event_id);
    assert.equal(back.toStartOfTimeline, false);
    assert.equal(back.data.liveEvent, true);

    // Both timelines hold both messages, in the same order.
    await waitUntil(
      bob,
      [RoomEvent.Timeline],
      () => timelineBodies(bob.getRoom(dmId)).includes("hi alice"),
      "bob's own message in his timeline",
    );
    const expected = ["hello bob", "hi alice"];
    assert.deepEqual(timelineBodies(alice.getRoom(dmId)), expected);
    assert.deepEqual(timelineBodies(bob.getRoom(dmId)), expected);
  });

  test("a group: created with a name, bob invited and joins, rename seen by bob", async () => {
    const { room_id: groupId } = await alice.createRoom({
      preset: Preset.PrivateChat,
      name: "Tea party",
      invite: [bobId],
    });
    const invited = await waitForMyMembership(bob, groupId, "invite");
    assert.equal(invited.getDMInviter(), undefined, "a group invite is not a DM");
    // The invite's stripped state carries the room's name.
    assert.equal(invited.name, "Tea party");
    await bob.joinRoom(groupId);
    const room = await waitForMyMembership(bob, groupId, "join");
    await waitUntil(bob, [RoomEvent.Name], () => room.name === "Tea party", "the group's name");

    await alice.setRoomName(groupId, "Tea party, renamed");
    await waitUntil(
      bob,
      [RoomEvent.Name, RoomEvent.Timeline],
      () => bob.getRoom(groupId)?.name === "Tea party, renamed",
      "the new name",
    );
    const nameEvent = bob.getRoom(groupId).currentState.getStateEvents(EventType.RoomName, "");
    assert.equal(nameEvent.getSender(), aliceId);
    assert.deepEqual(nameEvent.getContent(), { name: "Tea party, renamed" });

    // alice removes bob: his client sees himself leave, kicked by alice.
    await waitForMembership(alice, groupId, bobId, "join");
    await alice.kick(groupId, bobId, "party's over");
    const left = await waitForMyMembership(bob, groupId, "leave");
    const member = left.currentState.getStateEvents(EventType.RoomMember, bobId);
    assert.equal(member?.getContent().membership, "leave");
    assert.equal(member?.getSender(), aliceId, "kicked by alice");
    assert.equal(member?.getContent().reason, "party's over");
    await waitForMembership(alice, groupId, bobId, "leave");
  });

  test("backfill: a fresh client with initialSyncLimit 5 scrolls back through /messages", { timeout: 60_000 }, async () => {
    const bodies = Array.from({ length: 30 }, (_, i) => `backfill ${i + 1}`);
    // One message at a time, each once bob's client has it: a burst larger
    // than a sync's timeline limit (10 by default, as on Synapse) arrives as
    // a limited sync, and the SDK then rightly starts a new live timeline.
    for (const body of bodies) {
      const seen = nextTimelineEvent(bob, dmId, (e) => e.getContent().body === body, body, 20_000);
      await alice.sendTextMessage(dmId, body);
      await seen;
    }
    assert.deepEqual(timelineBodies(bob.getRoom(dmId)).slice(-30), bodies);

    // bob on a new device: a client with an empty store.
    const phone = await startedClient(await login("bob", "interop bob phone"), { initialSyncLimit: 5 });
    const room = phone.getRoom(dmId);
    assert.ok(room, "the DM is in the new client's first sync");
    assert.equal(room.getMyMembership(), "join");
    const live = room.getLiveTimeline();
    assert.deepEqual(
      live.getEvents().map((e) => e.getContent().body),
      bodies.slice(-5),
      "the first sync's timeline: the 5 latest events",
    );
    const prevBatch = live.getPaginationToken(EventTimeline.BACKWARDS);
    assert.equal(typeof prevBatch, "string", "a limited timeline has prev_batch");
    assert.equal(room.oldState.paginationToken, prevBatch);

    await phone.scrollback(room, 30);
    assert.deepEqual(timelineBodies(room).slice(-30), bodies, "all 30 messages, in order");
    assert.deepEqual(timelineBodies(room), ["hello bob", "hi alice", ...bodies]);
    const token = room.oldState.paginationToken;
    assert.ok(token === null || (typeof token === "string" && token !== prevBatch), `next token ${token}`);

    // Scrolling back to the start reaches the room's creation.
    for (let i = 0; i < 10 && room.oldState.paginationToken !== null; i++) {
      await phone.scrollback(room, 30);
    }
    assert.equal(room.oldState.paginationToken, null, "reached the start of the room");
    const first = room.getLiveTimeline().getEvents()[0];
    assert.equal(first.getType(), EventType.RoomCreate);
    assert.deepEqual(timelineBodies(room), ["hello bob", "hi alice", ...bodies]);
    const ids = room.getLiveTimeline().getEvents().map((e) => e.getId());
    assert.equal(new Set(ids).size, ids.length, "no event twice");
  });

  test("redaction: bob's client sees alice's message redacted", async () => {
    const bobSees = nextTimelineEvent(
      bob,
      dmId,
      (e) => e.getContent().body === "this was a mistake",
      "the message to redact",
    );
    const { event_id: eventId } = await alice.sendTextMessage(dmId, "this was a mistake");
    const { event } = await bobSees;
    assert.equal(event.getId(), eventId);
    assert.equal(event.isRedacted(), false);

    const redactionSeen = nextTimelineEvent(
      bob,
      dmId,
      (e) => e.getType() === EventType.RoomRedaction,
      "the redaction event",
    );
    const redaction = await alice.redactEvent(dmId, eventId, undefined, { reason: "typo" });
    assert.match(redaction.event_id, /^\$/);
    const { event: redactionEvent } = await redactionSeen;
    assert.equal(redactionEvent.getId(), redaction.event_id);
    // Room versions 11+ name the redacted event in content.redacts ...
    assert.equal(redactionEvent.getContent().redacts, eventId, JSON.stringify(redactionEvent.event));

    // ... and bob's client applies the redaction to the message it holds.
    // matrix-js-sdk 37.5 reads only the top-level `redacts`, which room
    // version 11 tells servers to add "when serving such events over the
    // Client-Server API" for backwards compatibility with older clients.
    await waitUntil(
      bob,
      [RoomEvent.Redaction, RoomEvent.Timeline],
      () => bob.getRoom(dmId).findEventById(eventId)?.isRedacted(),
      `the message redacted (the redaction bob received: ${JSON.stringify(redactionEvent.event)})`,
    );
    assert.equal(redactionEvent.getAssociatedId(), eventId, "the redaction names the message");
    const redacted = bob.getRoom(dmId).findEventById(eventId);
    assert.deepEqual(redacted.getContent(), {});
    assert.equal(redacted.getUnsigned().redacted_because?.event_id, redaction.event_id);

    // Fetched afresh from the server, the message is redacted too.
    const fetched = await bob.fetchRoomEvent(dmId, eventId);
    assert.deepEqual(fetched.content, {});
    assert.equal(fetched.unsigned?.redacted_because?.event_id, redaction.event_id);
    assert.equal(fetched.unsigned?.redacted_because?.content?.reason, "typo");
  });
});
