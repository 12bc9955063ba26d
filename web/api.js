// The HTTP API of docs/openapi.yaml, with the session's bearer token.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let token = null;
let onUnauthorized = () => {};

export function setToken(value) {
  token = value;
}

// Called when the server says the token is no longer good (401 on an authenticated call).
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

// Resolves to the parsed JSON answer (null for 204); rejects with ApiError
// for an error answer, or with the TypeError of fetch when the network fails.
// A read past the user's budget (429, --rate-limit-reads) is asked again
// after the Retry-After the server gave (at most READ_RETRIES times, each wait
// at most 10 s): a read is safe to repeat. A write's 429 is the caller's.
const READ_RETRIES = 3;

export async function api(method, path, body) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  for (let retries = 0; ; retries++) {
    const res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 429 && method === 'GET' && retries < READ_RETRIES) {
      const wait = Math.min(Math.max(Number(res.headers.get('Retry-After')) || 1, 1), 10);
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
      continue;
    }
    if (res.status === 204) return null;
    const data = await res.json().catch(() => null);
    if (res.ok) return data;
    if (res.status === 401 && token) onUnauthorized();
    const err = data && data.error ? data.error : { code: 'http_' + res.status, message: res.statusText };
    throw new ApiError(res.status, err.code, err.message);
  }
}

// An id from ms milliseconds before id (ids are milliseconds shifted left 22
// bits, docs/architecture.md): where a catch-up starts, so that what the log
// carried late under an older id (another node's post, a retried one) is asked for too.
export function idBefore(id, ms) {
  const x = BigInt(id) - (BigInt(ms) << 22n);
  return x > 0n ? x.toString() : '0';
}

// Message ids are 64-bit decimal strings: compare them without losing precision.
export function idCompare(a, b) {
  const x = BigInt(a), y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}
