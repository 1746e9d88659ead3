import { describe, expect, it } from 'vitest';

import { parseFrame } from './protocol';
import { authFrame, reconnectDelay, socketUrl } from './socket';

describe('connecting', () => {
  it('derives the socket URL from the server URL', () => {
    expect(socketUrl('https://chat.example.org')).toBe('wss://chat.example.org/_teatime/ws');
    expect(socketUrl('http://127.0.0.1:8008/')).toBe('ws://127.0.0.1:8008/_teatime/ws');
  });

  it('resumes from the last token, or starts from now without one', () => {
    expect(authFrame('T', 'tok-7')).toEqual({ type: 'auth', token: 'T', since: 'tok-7' });
    expect(authFrame('T', null)).toEqual({ type: 'auth', token: 'T' });
  });

  it('backs off exponentially with jitter, capped at 30 s', () => {
    const top = () => 1;
    const bottom = () => 0;
    expect([0, 1, 2, 3].map((a) => reconnectDelay(a, top))).toEqual([500, 1000, 2000, 4000]);
    expect(reconnectDelay(3, bottom)).toBe(2000);
    expect(reconnectDelay(10, top)).toBe(30_000);
    expect(reconnectDelay(1000, top)).toBe(30_000);
  });
});

describe('frames', () => {
  it('parses the chat frames', () => {
    expect(parseFrame('{"type":"message.new","room_id":"!r:x","event":{},"token":"t"}')).toMatchObject({ type: 'message.new', token: 't' });
    expect(parseFrame('{"type":"typing","room_id":"!r:x","user_ids":["@a:x"]}')).toMatchObject({ user_ids: ['@a:x'] });
    expect(parseFrame('{"type":"error","errcode":"M_FORBIDDEN","re":"txn1"}')).toEqual({ type: 'error', errcode: 'M_FORBIDDEN', re: 'txn1', error: '' });
  });

  it('passes call frames through for a call screen', () => {
    expect(parseFrame('{"type":"call.offer","sdp":"v=0"}')).toEqual({ type: 'call.offer', sdp: 'v=0' });
  });

  it('rejects malformed and unknown frames', () => {
    for (const bad of ['nope', '[]', '{"type":5}', '{"type":"mystery"}', '{"type":"message.new","room_id":"!r:x"}', '{"type":"typing","room_id":"!r","user_ids":"x"}']) {
      expect(parseFrame(bad), bad).toBeNull();
    }
  });
});
