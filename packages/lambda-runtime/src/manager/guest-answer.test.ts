import { describe, expect, it } from "vitest";
import { GuestBadResponseError } from "../errors.js";
import { guestAnswerHeaders, isGuestProtocolError } from "./guest-answer.js";

function refusal(status: number, headers: Record<string, string | string[] | undefined>) {
  try {
    guestAnswerHeaders("liar", status, headers);
  } catch (error) {
    expect(error).toBeInstanceOf(GuestBadResponseError);
    const e = error as GuestBadResponseError;
    expect([e.code, e.status]).toEqual(["OL_GUEST_BAD_RESPONSE", 502]);
    expect(e.message).toMatch(/^lambda liar answered with /);
    return e.message;
  }
  throw new Error(`status ${status} with ${JSON.stringify(headers)} was accepted`);
}

describe("guestAnswerHeaders", () => {
  it.each([200, 204, 304, 418, 599])("passes status %i", (status) => {
    expect(guestAnswerHeaders("l", status, { "x-a": "1" })).toEqual({ "x-a": "1" });
  });

  // 1xx are interim: passed on as final they make a client wait for, or switch to, what the
  // next answer on its connection holds.
  it.each([999, 600, 199, 150, 101, 100, 42, 0, -200, 200.5, Number.NaN, Number.POSITIVE_INFINITY])(
    "refuses status %s, naming it",
    (status) => {
      expect(refusal(status, {})).toContain(`status "${status}"`);
    },
  );

  it.each([
    ["x bad", "a space"],
    ["x:a", "a colon"],
    ["", "nothing"],
    ["x\r\ninjected", "CRLF"],
    ["x\0", "NUL"],
    ["caf\u00e9", "a non-ASCII letter"],
    ['x"', "a quote"],
    ["x(y)", "parentheses"],
  ])("refuses the header name %j (%s), naming it escaped", (name) => {
    const message = refusal(200, { [name]: "v" });
    expect(message).toContain("header name that is not an HTTP token");
    expect(message).toContain(JSON.stringify(name));
  });

  it.each([
    ["a\r\nX-Injected: yes", "U+000D (CR) at offset 1"],
    ["a\rb", "U+000D (CR)"],
    ["a\nX-Injected: yes", "U+000A (LF) at offset 1"],
    ["a\0b", "U+0000 (NUL)"],
    ["a\x01b", "U+0001"],
    ["a\x7f", "U+007F"],
    ["\u20ac", "U+20AC"],
    [" leading", "whitespace"],
    ["trailing\t", "whitespace"],
  ])("refuses the value %j, naming the header but not quoting the value", (value, why) => {
    const message = refusal(200, { "x-ok": "fine", "x-evil": value });
    expect(message).toContain('header "x-evil"');
    expect(message).toContain(why);
    expect(message).not.toContain("Injected");
  });

  it("refuses one bad value among many of a header (set-cookie)", () => {
    const message = refusal(200, { "set-cookie": ["a=1", "b=2\r\nX-Injected: yes"] });
    expect(message).toContain('header "set-cookie"');
  });

  it("keeps its message short whatever the guest sent", () => {
    const huge = `${"v".repeat(1_000_000)}\r\nX-Injected: yes`;
    expect(refusal(200, { "x-big": huge }).length).toBeLessThan(300);
    const name = `${"n".repeat(100_000)} `;
    expect(refusal(200, { [name]: "v" }).length).toBeLessThan(300);
  });

  it("passes tabs, inner spaces, Latin-1 text and empty values", () => {
    const headers = {
      "x-a": "a\tb c",
      "x-b": "caf\u00e9",
      "x-c": "",
      "set-cookie": ["a=1", "b=2"],
    };
    expect(guestAnswerHeaders("l", 200, headers)).toEqual(headers);
  });

  it("drops connection and framing headers, and the ones Connection names", () => {
    const out = guestAnswerHeaders("l", 200, {
      connection: "close, X-Private",
      "keep-alive": "timeout=5",
      "transfer-encoding": "chunked",
      "proxy-connection": "keep-alive",
      upgrade: "websocket",
      trailer: "x-sum",
      te: "trailers",
      "x-private": "secret",
      "content-type": "text/plain",
      "content-length": "12",
      "x-undefined": undefined,
    });
    expect(out).toEqual({ "content-type": "text/plain", "content-length": "12" });
  });

  it.each([["-1"], ["+2"], ["1e3"], [" 2"], ["2, 2"], [""], ["9".repeat(16)]])(
    "refuses Content-Length %j",
    (value) => {
      expect(refusal(200, { "content-length": value })).toMatch(/content-length/i);
    },
  );

  it("refuses two Content-Lengths", () => {
    expect(refusal(200, { "content-length": ["2", "2"] })).toContain("Content-Length");
  });

  it("lower-cases names and merges those that differ only in case", () => {
    const out = guestAnswerHeaders("l", 200, {
      "X-A": "1",
      "x-a": "2",
      "Transfer-Encoding": "gzip",
    });
    expect(out).toEqual({ "x-a": ["1", "2"] });
  });

  it("keeps __proto__ a header, not the prototype of what it returns", () => {
    const raw = JSON.parse('{"__proto__": ["a", "b"], "x-a": "1"}') as Record<string, string[]>;
    const out = guestAnswerHeaders("l", 200, raw);
    expect(Object.getPrototypeOf(out)).toBeNull();
    expect(Object.keys(out)).toEqual(["__proto__", "x-a"]);
    expect(({} as Record<string, unknown>)["0"]).toBeUndefined();
  });
});

describe("isGuestProtocolError", () => {
  it("knows undici's refusals of the bytes, not a socket that closed", () => {
    const parser = Object.assign(new Error("Response does not match the HTTP/1.1 protocol"), {
      name: "HTTPParserError",
    });
    expect(isGuestProtocolError(parser)).toBe(true);
    const overflow = Object.assign(new Error("Headers Overflow Error"), {
      code: "UND_ERR_HEADERS_OVERFLOW",
    });
    expect(isGuestProtocolError(overflow)).toBe(true);
    const closed = Object.assign(new Error("other side closed"), { code: "UND_ERR_SOCKET" });
    expect(isGuestProtocolError(closed)).toBe(false);
    expect(isGuestProtocolError("HTTPParserError")).toBe(false);
  });
});
