// The typed REST client: every call goes through `paths`, generated from the
// committed OpenAPI document (openapi/teatime.json), so a request or response
// that does not match the spec does not compile.

import createClient, { type Client } from 'openapi-fetch';

import type { components, paths } from './schema';

export type Api = Client<paths>;
export type Schemas = components['schemas'];

/** A failed request, carrying the Matrix error code when the server sent one. */
export class MatrixError extends Error {
  readonly errcode: string;
  readonly status: number;
  readonly retryAfterMs: number | undefined;

  constructor(status: number, errcode: string, message: string, retryAfterMs?: number) {
    super(message);
    this.name = 'MatrixError';
    this.status = status;
    this.errcode = errcode;
    this.retryAfterMs = retryAfterMs;
  }
}

/** Builds a MatrixError from whatever a failed response carried. */
export function matrixError(status: number, body: unknown): MatrixError {
  if (typeof body === 'object' && body !== null) {
    const fields = body as Record<string, unknown>;
    const errcode = typeof fields.errcode === 'string' ? fields.errcode : 'M_UNKNOWN';
    const error = typeof fields.error === 'string' ? fields.error : '';
    const retry = typeof fields.retry_after_ms === 'number' ? fields.retry_after_ms : undefined;
    return new MatrixError(status, errcode, error, retry);
  }
  return new MatrixError(status, 'M_UNKNOWN', status ? `HTTP ${status}` : 'network error');
}

/** What to tell a person about a failure, in words rather than codes. */
export function describeError(error: unknown): string {
  if (error instanceof MatrixError) {
    const known: Record<string, string> = {
      M_FORBIDDEN: 'You are not allowed to do that',
      M_USER_IN_USE: 'That username is taken',
      M_INVALID_USERNAME: 'That username is not allowed (use lowercase letters, digits and . _ = - /)',
      M_UNKNOWN_TOKEN: 'Your session has ended; please sign in again',
      M_MISSING_TOKEN: 'Please sign in',
      M_LIMIT_EXCEEDED: 'Too many attempts; please wait a moment',
      M_TOO_LARGE: 'That is too large for the server',
      M_NOT_FOUND: 'Not found',
      M_UNRECOGNIZED: 'The server does not support this',
      M_USER_DEACTIVATED: 'This account has been deactivated',
      M_WEAK_PASSWORD: 'That password is too weak',
      M_EXCLUSIVE: 'That name is reserved',
      M_INVALID_PARAM: 'Something in the request was not valid',
      M_BAD_JSON: 'The request was not understood',
      M_RESOURCE_LIMIT_EXCEEDED: 'The server has reached a limit',
    };
    const summary = known[error.errcode];
    const detail = error.message.trim();
    if (summary && detail && detail !== summary) return `${summary}: ${detail}`;
    if (summary) return summary;
    return detail || `The server refused the request (${error.errcode})`;
  }
  if (error instanceof TypeError) return 'Cannot reach the server; check the address and your connection';
  if (error instanceof Error) return error.message;
  return 'Something went wrong';
}

/**
 * Unwraps an openapi-fetch result: the data on success, a MatrixError otherwise.
 * `T` is the success type the generated spec declares for the operation.
 */
export async function call<T>(
  request: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  const { data, error, response } = await request;
  if (!response.ok || data === undefined) throw matrixError(response.status, error);
  return data;
}

/** A client for `baseUrl`, sending `token` (when given) as a bearer token. */
export function createApi(baseUrl: string, token?: string): Api {
  const api = createClient<paths>({ baseUrl });
  if (token) {
    api.use({
      onRequest({ request }) {
        request.headers.set('Authorization', `Bearer ${token}`);
        return request;
      },
    });
  }
  return api;
}

/** `https://example.org/` -> `https://example.org`, adding `https://` when missing. */
export function normaliseBaseUrl(input: string): string {
  let url = input.trim();
  if (!/^https?:\/\//i.test(url)) url = `https://${url}`;
  return url.replace(/\/+$/, '');
}
