// Files: uploads (straight to the bucket when the server offers presigned
// URLs, through the server otherwise) with progress, and authenticated
// downloads turned into blob URLs for previews and saving.

import { call, matrixError, MatrixError, type Api } from './client';
import type { paths } from './schema';

type Json<T> = T extends { content: { 'application/json; charset=utf-8': infer B } } ? B : never;
type UploadAnswer = Json<paths['/_matrix/media/v3/upload']['post']['responses'][200]>;

export type Progress = (fraction: number) => void;

/** `mxc://server/id` -> its parts, or null when it is not one. */
export function parseMxc(uri: string): { server: string; mediaId: string } | null {
  const match = /^mxc:\/\/([^/]+)\/([^/?#]+)$/.exec(uri);
  return match?.[1] && match[2] ? { server: match[1], mediaId: match[2] } : null;
}

/** Sends `body` with XMLHttpRequest (fetch reports no upload progress). */
function sendWithProgress(
  method: string,
  url: string,
  headers: Record<string, string>,
  body: Blob,
  onProgress: Progress,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && e.total > 0) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => {
      resolve({ status: xhr.status, text: xhr.responseText });
    };
    xhr.onerror = () => {
      reject(new TypeError('network error during upload'));
    };
    xhr.send(body);
  });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Whether the server offers direct uploads; learned from the first try. */
export interface UploadContext {
  api: Api;
  baseUrl: string;
  token: string;
  directUploads: boolean | undefined;
}

/**
 * Uploads a file and returns its `mxc://` URI. Tries a presigned direct
 * upload first; a server that keeps media on disk answers `M_UNRECOGNIZED`,
 * and from then on files go through `POST /_matrix/media/v3/upload`.
 */
export async function uploadFile(ctx: UploadContext, file: File, onProgress: Progress): Promise<string> {
  const contentType = file.type || 'application/octet-stream';
  if (ctx.directUploads !== false) {
    try {
      const grant = await call(
        ctx.api.POST('/_teatime/media/v1/upload_url', {
          body: { content_type: contentType, size: file.size, filename: file.name },
        }),
      );
      ctx.directUploads = true;
      const put = await sendWithProgress(grant.upload_method, grant.upload_url, grant.upload_headers, file, onProgress);
      if (put.status < 200 || put.status >= 300) {
        throw new MatrixError(put.status, 'M_UNKNOWN', `the storage refused the upload (HTTP ${put.status})`);
      }
      const done = await call(ctx.api.POST('/_teatime/media/v1/complete', { body: { content_uri: grant.content_uri } }));
      return done.content_uri;
    } catch (error) {
      if (!(error instanceof MatrixError && error.errcode === 'M_UNRECOGNIZED')) throw error;
      ctx.directUploads = false;
    }
  }
  const url = `${ctx.baseUrl}/_matrix/media/v3/upload?filename=${encodeURIComponent(file.name)}`;
  const answer = await sendWithProgress(
    'POST',
    url,
    { Authorization: `Bearer ${ctx.token}`, 'Content-Type': contentType },
    file,
    onProgress,
  );
  const body = parseJson(answer.text);
  if (answer.status !== 200) throw matrixError(answer.status, body);
  const uploaded = body as UploadAnswer;
  if (typeof uploaded.content_uri !== 'string') throw matrixError(answer.status, body);
  return uploaded.content_uri;
}

/** The authenticated media path of an `mxc://` URI, as a thumbnail or the file. */
export function mediaPath(mxc: string, thumbnail?: { width: number; height: number }): string | null {
  const parts = parseMxc(mxc);
  if (!parts) return null;
  const id = `${encodeURIComponent(parts.server)}/${encodeURIComponent(parts.mediaId)}`;
  return thumbnail
    ? `/_matrix/client/v1/media/thumbnail/${id}?width=${thumbnail.width}&height=${thumbnail.height}&method=scale`
    : `/_matrix/client/v1/media/download/${id}`;
}

/** Downloads media with the access token (authenticated media) as a blob. */
export async function fetchMedia(baseUrl: string, token: string, path: string): Promise<Blob> {
  const response = await fetch(`${baseUrl}${path}`, { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) {
    const body: unknown = await response.json().catch(() => undefined);
    throw matrixError(response.status, body);
  }
  return response.blob();
}
