// The node's REST API, as the console uses it: a bearer token, JSON in and out, and every
// error turned into a readable message (never a blank page).

export class ApiError extends Error {
  constructor(
    public readonly status: number,
    public readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

export class Api {
  constructor(
    private readonly token: string,
    private readonly base = "",
    private readonly fetcher: Fetch = (i, init) => fetch(i, init),
  ) {}

  async call<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await this.fetcher(this.base + path, {
        method,
        headers: {
          Authorization: `Bearer ${this.token}`,
          ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, "unreachable", `the node did not answer (${String(e)})`);
    }
    const text = await res.text();
    let data: unknown = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = text;
    }
    if (!res.ok) throw toError(res.status, data);
    return data as T;
  }

  get<T = unknown>(path: string): Promise<T> {
    return this.call<T>("GET", path);
  }

  post<T = unknown>(path: string, body?: unknown): Promise<T> {
    return this.call<T>("POST", path, body ?? {});
  }
}

/** The node's `{"error": {"code", "message"}}`, or whatever came back, as an ApiError. */
export function toError(status: number, data: unknown): ApiError {
  const err = (data as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  if (err && typeof err.message === "string") {
    return new ApiError(status, typeof err.code === "string" ? err.code : `http_${status}`, err.message);
  }
  const detail = typeof data === "string" && data ? data.slice(0, 200) : "";
  return new ApiError(status, `http_${status}`, `HTTP ${status}${detail ? `: ${detail}` : ""}`);
}
