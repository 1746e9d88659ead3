import { describe, expect, it } from 'vitest';

import { describeError, matrixError, MatrixError, normaliseBaseUrl } from './client';
import { mediaPath, parseMxc } from './media';
import { parseUserId } from '../state/session';

describe('errors', () => {
  it('reads Matrix error bodies', () => {
    const error = matrixError(429, { errcode: 'M_LIMIT_EXCEEDED', error: 'slow down', retry_after_ms: 500 });
    expect(error).toBeInstanceOf(MatrixError);
    expect(error.errcode).toBe('M_LIMIT_EXCEEDED');
    expect(error.retryAfterMs).toBe(500);
    expect(matrixError(502, 'Bad gateway').errcode).toBe('M_UNKNOWN');
  });

  it('says what went wrong in words', () => {
    expect(describeError(new MatrixError(400, 'M_USER_IN_USE', 'User ID already taken.'))).toBe('That username is taken: User ID already taken.');
    expect(describeError(new MatrixError(403, 'M_FORBIDDEN', ''))).toBe('You are not allowed to do that');
    expect(describeError(new MatrixError(400, 'M_SOMETHING_NEW', 'odd'))).toBe('odd');
    expect(describeError(new MatrixError(400, 'M_SOMETHING_NEW', ''))).toBe('The server refused the request (M_SOMETHING_NEW)');
    expect(describeError(new TypeError('Failed to fetch'))).toMatch(/Cannot reach the server/);
  });
});

describe('addresses', () => {
  it('normalises server URLs', () => {
    expect(normaliseBaseUrl(' matrix.example.org/ ')).toBe('https://matrix.example.org');
    expect(normaliseBaseUrl('http://127.0.0.1:8008')).toBe('http://127.0.0.1:8008');
  });

  it('accepts full user ids on any server only', () => {
    expect(parseUserId(' @alice:example.org ')).toBe('@alice:example.org');
    expect(parseUserId('@bob:127.0.0.1:8448')).toBe('@bob:127.0.0.1:8448');
    for (const bad of ['alice', '@alice', 'alice:example.org', '@al ice:x']) expect(parseUserId(bad), bad).toBeNull();
  });

  it('turns mxc URIs into authenticated media paths', () => {
    expect(parseMxc('mxc://example.org/abc')).toEqual({ server: 'example.org', mediaId: 'abc' });
    expect(parseMxc('https://example.org/abc')).toBeNull();
    expect(mediaPath('mxc://example.org:8448/abc')).toBe('/_matrix/client/v1/media/download/example.org%3A8448/abc');
    expect(mediaPath('mxc://x/abc', { width: 640, height: 480 })).toBe('/_matrix/client/v1/media/thumbnail/x/abc?width=640&height=480&method=scale');
  });
});
