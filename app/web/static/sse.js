// Server-Sent Events over fetch() (contract: SSE `GET /api/events?channel=`).
//
// Not EventSource, on purpose: EventSource delivers a named event (`event: build.started`) only
// to a listener registered for that exact name, and event types are open-ended here, so it would
// silently miss types the client did not know in advance; it also cannot send the
// `Authorization` header, which would put the token in the URL. The wire is the same:
// `Last-Event-ID` on reconnect, `id:` = seq, `event:` = type.

/**
 * @typedef {{event: string, data: string, id: string | null}} SseMessage
 */

/** Incremental `text/event-stream` parser: feed() text chunks, get whole messages back. */
export class SseParser {
  #buffer = '';
  #event = '';
  /** @type {string[]} */ #data = [];
  /** @type {string | null} */ #id = null;
  /** Comment lines (`: heartbeat`) seen so far: proof the stream is alive. */
  comments = 0;

  /**
   * @param {string} chunk
   * @returns {SseMessage[]}
   */
  feed(chunk) {
    this.#buffer += chunk;
    /** @type {SseMessage[]} */ const out = [];
    let newline;
    while ((newline = this.#buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.#buffer.slice(0, newline);
      const width = this.#buffer.startsWith('\r\n', newline) ? 2 : 1;
      this.#buffer = this.#buffer.slice(newline + width);
      if (line === '') {
        if (this.#data.length) out.push({ event: this.#event || 'message', data: this.#data.join('\n'), id: this.#id });
        this.#event = '';
        this.#data = [];
        this.#id = null;
        continue;
      }
      if (line.startsWith(':')) { this.comments += 1; continue; }
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') this.#event = value;
      else if (field === 'data') this.#data.push(value);
      else if (field === 'id') this.#id = value;
    }
    return out;
  }
}

/**
 * Read one SSE response to its end, calling `onMessage` per message and `onAlive` per chunk.
 * Resolves when the server ends the stream; rejects on a network error or abort.
 * @param {Response} res
 * @param {(message: SseMessage) => void} onMessage
 * @param {() => void} onAlive
 */
export async function readSse(res, onMessage, onAlive) {
  if (!res.body) throw new Error('the response has no body stream');
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onAlive();
    for (const message of parser.feed(decoder.decode(value, { stream: true }))) onMessage(message);
  }
}
