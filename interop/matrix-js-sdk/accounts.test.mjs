// Interoperability test: the unmodified matrix-js-sdk against TeaTime's
// account API. The test starts the `teatime` binary itself (TEATIME_BIN, or
// the default cargo target path), on a free loopback port with a fresh data
// directory, and talks to it only through matrix-js-sdk's MatrixClient API.
// Raw HTTP is used for one thing only: waiting for GET /healthz.

import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";

import { AuthType, createClient, InteractiveAuth, MatrixError } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

import { SERVER_NAME, server, startServer, stopServer } from "./server.mjs";

// The SDK logs at error level whenever a request meets M_UNKNOWN_TOKEN, which
// this test provokes on purpose; MATRIX_SDK_LOG_LEVEL=debug shows everything.
logger.setLevel(process.env.MATRIX_SDK_LOG_LEVEL || "silent");

const USERNAME = "alice";
const PASSWORD = "correct horse battery staple";
const NEW_PASSWORD = "tr0ub4dor&3 but longer";
const USER_ID = `@${USERNAME}:${SERVER_NAME}`;

/** A client with no credentials. */
function anonClient() {
  return createClient({ baseUrl: server.baseUrl });
}

/** A client for a session returned by /register, /login or /refresh. */
function sessionClient({ access_token, refresh_token, user_id, device_id }) {
  return createClient({
    baseUrl: server.baseUrl,
    accessToken: access_token,
    refreshToken: refresh_token,
    userId: user_id ?? USER_ID,
    deviceId: device_id,
  });
}

function passwordLogin(password, deviceName, extra = {}) {
  return anonClient().loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user: USERNAME },
    password,
    initial_device_display_name: deviceName,
    ...extra,
  });
}

/** An assert.rejects validator: a MatrixError with this errcode and HTTP status. */
function matrixError(errcode, httpStatus) {
  return (err) => {
    assert.ok(err instanceof MatrixError, `expected a MatrixError, got ${err?.name}: ${err}`);
    assert.equal(err.errcode, errcode, `errcode (error body: ${JSON.stringify(err.data)})`);
    assert.equal(err.httpStatus, httpStatus, `httpStatus (error body: ${JSON.stringify(err.data)})`);
    return true;
  };
}

describe("matrix-js-sdk against TeaTime: accounts", () => {
  /** The session created by registration; the account's main device. */
  let mainSession;
  let main;

  let failed = false;
  before(() => startServer(), { timeout: 40_000 });
  afterEach((t) => {
    if (!t.passed) failed = true;
  });
  after(async () => {
    await stopServer();
    if (failed) {
      console.error(`--- teatime output ---\n${server.output}`);
    }
  });

  test("getVersions() lists v1.19", async () => {
    const client = anonClient();
    const versions = await client.getVersions();
    assert.ok(Array.isArray(versions.versions), JSON.stringify(versions));
    assert.ok(versions.versions.includes("v1.19"), `versions: ${JSON.stringify(versions.versions)}`);
    assert.equal(await client.isVersionSupported("v1.19"), true);
  });

  test("register with InteractiveAuth and m.login.dummy", async () => {
    const client = anonClient();
    assert.equal(await client.isUsernameAvailable(USERNAME), true);

    const sentAuth = [];
    const challenges = [];
    const ia = new InteractiveAuth({
      matrixClient: client,
      doRequest: async (auth) => {
        sentAuth.push(auth);
        try {
          return await client.registerRequest({
            username: USERNAME,
            password: PASSWORD,
            initial_device_display_name: "interop laptop",
            ...(auth ? { auth } : {}),
          });
        } catch (err) {
          if (err instanceof MatrixError && err.httpStatus === 401) challenges.push(err.data);
          throw err;
        }
      },
      // Only m.login.dummy is expected, which InteractiveAuth submits by itself.
      stateUpdated: (stage, status) => {
        throw new Error(`unexpected UIA stage ${stage}: ${JSON.stringify(status)}`);
      },
      requestEmailToken: () => {
        throw new Error("unexpected email stage");
      },
      supportedStages: [AuthType.Dummy],
    });
    const res = await ia.attemptAuth();

    // The first request carried no auth and got the 401 challenge with flows
    // and a session; the second carried the dummy stage with that session.
    assert.equal(sentAuth.length, 2, `auth dicts sent: ${JSON.stringify(sentAuth)}`);
    assert.equal(sentAuth[0], null);
    assert.equal(challenges.length, 1);
    const [challenge] = challenges;
    assert.equal(typeof challenge.session, "string");
    assert.ok(
      challenge.flows.some((f) => f.stages.length === 1 && f.stages[0] === "m.login.dummy"),
      `flows: ${JSON.stringify(challenge.flows)}`,
    );
    assert.deepEqual(sentAuth[1], { type: "m.login.dummy", session: challenge.session });

    assert.equal(res.user_id, USER_ID);
    assert.equal(typeof res.access_token, "string");
    assert.equal(typeof res.device_id, "string");
    mainSession = res;
    main = sessionClient(res);

    assert.equal(await client.isUsernameAvailable(USERNAME), false);
  });

  test("whoami() returns the user id and device id", async () => {
    const who = await main.whoami();
    assert.equal(who.user_id, USER_ID);
    assert.equal(who.device_id, mainSession.device_id);
  });

  test("password login with refresh tokens; refreshToken() rotates them", async () => {
    const login = await passwordLogin(PASSWORD, "interop refresher", { refresh_token: true });
    assert.equal(login.user_id, USER_ID);
    assert.equal(typeof login.device_id, "string");
    assert.notEqual(login.device_id, mainSession.device_id);
    assert.equal(typeof login.access_token, "string");
    assert.equal(typeof login.refresh_token, "string", `login response: ${JSON.stringify(login)}`);
    assert.equal(typeof login.expires_in_ms, "number");
    assert.ok(login.expires_in_ms > 0);

    const client = sessionClient(login);
    const before = await client.whoami();
    assert.equal(before.user_id, USER_ID);
    assert.equal(before.device_id, login.device_id);

    const refreshed = await client.refreshToken(login.refresh_token);
    assert.equal(typeof refreshed.access_token, "string");
    assert.equal(typeof refreshed.refresh_token, "string");
    assert.equal(typeof refreshed.expires_in_ms, "number");
    assert.ok(refreshed.expires_in_ms > 0);
    assert.notEqual(refreshed.access_token, login.access_token);
    assert.notEqual(refreshed.refresh_token, login.refresh_token);

    // The new access token works, for the same device.
    client.setAccessToken(refreshed.access_token);
    const who = await client.whoami();
    assert.equal(who.user_id, USER_ID);
    assert.equal(who.device_id, login.device_id);

    // The new refresh token works in its turn.
    const again = await client.refreshToken(refreshed.refresh_token);
    assert.equal(typeof again.access_token, "string");
    assert.equal(typeof again.refresh_token, "string");
    assert.notEqual(again.refresh_token, refreshed.refresh_token);
    client.setAccessToken(again.access_token);
    assert.equal((await client.whoami()).device_id, login.device_id);

    // The first refresh token was revoked once the tokens it produced were
    // used (spec, POST /refresh: it "remains valid until the new access token
    // or refresh token is used"): 401 M_UNKNOWN_TOKEN.
    await assert.rejects(client.refreshToken(login.refresh_token), matrixError("M_UNKNOWN_TOKEN", 401));
  });

  test("setDisplayName / setAvatarUrl / getProfileInfo round trip", async () => {
    await main.setDisplayName("Alice Liddell");
    assert.deepEqual(await main.getProfileInfo(USER_ID, "displayname"), {
      displayname: "Alice Liddell",
    });

    const avatar = "mxc://localhost/AbCdEfGhIjKlMnOp";
    await main.setAvatarUrl(avatar);
    assert.deepEqual(await main.getProfileInfo(USER_ID, "avatar_url"), { avatar_url: avatar });

    const profile = await main.getProfileInfo(USER_ID);
    assert.equal(profile.displayname, "Alice Liddell");
    assert.equal(profile.avatar_url, avatar);

    // Profiles are readable by other users' clients too.
    const other = await passwordLogin(PASSWORD, "interop profile reader");
    const reader = sessionClient(other);
    assert.equal((await reader.getProfileInfo(USER_ID)).displayname, "Alice Liddell");
    await reader.logout();
  });

  test("getDevices / setDeviceDetails / deleteDevice with password UIA", async () => {
    const phone = await passwordLogin(PASSWORD, "interop phone");
    const phoneClient = sessionClient(phone);
    assert.equal((await phoneClient.whoami()).device_id, phone.device_id);

    const { devices } = await main.getDevices();
    const ids = devices.map((d) => d.device_id);
    assert.ok(ids.includes(mainSession.device_id), `devices: ${JSON.stringify(devices)}`);
    assert.ok(ids.includes(phone.device_id), `devices: ${JSON.stringify(devices)}`);
    assert.equal(devices.find((d) => d.device_id === phone.device_id).display_name, "interop phone");

    await main.setDeviceDetails(phone.device_id, { display_name: "Renamed phone" });
    const renamed = await main.getDevice(phone.device_id);
    assert.equal(renamed.device_id, phone.device_id);
    assert.equal(renamed.display_name, "Renamed phone");

    // Without auth: the 401 UIA challenge, offering m.login.password.
    let challenge;
    await assert.rejects(main.deleteDevice(phone.device_id), (err) => {
      assert.ok(err instanceof MatrixError, `expected a MatrixError, got ${err}`);
      assert.equal(err.httpStatus, 401);
      challenge = err.data;
      return true;
    });
    assert.equal(typeof challenge.session, "string", `challenge: ${JSON.stringify(challenge)}`);
    assert.ok(
      challenge.flows.some((f) => f.stages.includes("m.login.password")),
      `flows: ${JSON.stringify(challenge.flows)}`,
    );

    // A wrong password inside UIA is refused, and the device stays.
    await assert.rejects(
      main.deleteDevice(phone.device_id, {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: USER_ID },
        password: "not the password",
        session: challenge.session,
      }),
      matrixError("M_FORBIDDEN", 401),
    );
    assert.equal((await phoneClient.whoami()).device_id, phone.device_id);

    // With the right password and the session: the device is deleted.
    assert.deepEqual(
      await main.deleteDevice(phone.device_id, {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: USER_ID },
        password: PASSWORD,
        session: challenge.session,
      }),
      {},
    );

    await assert.rejects(phoneClient.whoami(), matrixError("M_UNKNOWN_TOKEN", 401));
    const after = (await main.getDevices()).devices.map((d) => d.device_id);
    assert.ok(!after.includes(phone.device_id), `devices: ${JSON.stringify(after)}`);
    await assert.rejects(main.getDevice(phone.device_id), matrixError("M_NOT_FOUND", 404));
  });

  test("wrong password login is M_FORBIDDEN / 403", async () => {
    await assert.rejects(passwordLogin("definitely wrong", "nope"), matrixError("M_FORBIDDEN", 403));
  });

  test("logout() invalidates the access token", async () => {
    const session = await passwordLogin(PASSWORD, "interop logout");
    const client = sessionClient(session);
    assert.equal((await client.whoami()).device_id, session.device_id);
    assert.deepEqual(await client.logout(), {});
    await assert.rejects(client.whoami(), matrixError("M_UNKNOWN_TOKEN", 401));
    const ids = (await main.getDevices()).devices.map((d) => d.device_id);
    assert.ok(!ids.includes(session.device_id), `devices: ${JSON.stringify(ids)}`);
  });

  test("getCapabilities() shows m.change_password enabled", async () => {
    const caps = await main.getCapabilities();
    assert.equal(caps["m.change_password"]?.enabled, true, `capabilities: ${JSON.stringify(caps)}`);
    const fresh = await main.fetchCapabilities();
    assert.equal(fresh["m.change_password"]?.enabled, true);
  });

  test("setPassword with password UIA; old password then refused", async () => {
    const other = await passwordLogin(PASSWORD, "interop other device");
    const otherClient = sessionClient(other);

    let challenge;
    await assert.rejects(main.setPassword({}, NEW_PASSWORD, true), (err) => {
      assert.ok(err instanceof MatrixError, `expected a MatrixError, got ${err}`);
      assert.equal(err.httpStatus, 401);
      challenge = err.data;
      return true;
    });
    assert.ok(
      challenge.flows.some((f) => f.stages.includes("m.login.password")),
      `flows: ${JSON.stringify(challenge.flows)}`,
    );

    await main.setPassword(
      {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: USER_ID },
        password: PASSWORD,
        session: challenge.session,
      },
      NEW_PASSWORD,
      true,
    );

    // logout_devices: true keeps the requesting device, ends the others.
    assert.equal((await main.whoami()).device_id, mainSession.device_id);
    await assert.rejects(otherClient.whoami(), matrixError("M_UNKNOWN_TOKEN", 401));

    await assert.rejects(passwordLogin(PASSWORD, "old password"), matrixError("M_FORBIDDEN", 403));
    const fresh = await passwordLogin(NEW_PASSWORD, "new password");
    assert.equal(fresh.user_id, USER_ID);
    await sessionClient(fresh).logout();
  });

  test("deactivateAccount with password UIA", async () => {
    let challenge;
    await assert.rejects(main.deactivateAccount(), (err) => {
      assert.ok(err instanceof MatrixError, `expected a MatrixError, got ${err}`);
      assert.equal(err.httpStatus, 401);
      challenge = err.data;
      return true;
    });
    await main.deactivateAccount({
      type: "m.login.password",
      identifier: { type: "m.id.user", user: USER_ID },
      password: NEW_PASSWORD,
      session: challenge.session,
    });
    await assert.rejects(main.whoami(), matrixError("M_UNKNOWN_TOKEN", 401));
    // A deactivated account cannot log in: the spec's POST /login answers 403
    // with M_USER_DEACTIVATED or M_FORBIDDEN.
    await assert.rejects(passwordLogin(NEW_PASSWORD, "after deactivation"), (err) => {
      assert.ok(err instanceof MatrixError, `expected a MatrixError, got ${err}`);
      assert.equal(err.httpStatus, 403);
      assert.ok(["M_USER_DEACTIVATED", "M_FORBIDDEN"].includes(err.errcode), `errcode ${err.errcode}`);
      return true;
    });
  });
});
