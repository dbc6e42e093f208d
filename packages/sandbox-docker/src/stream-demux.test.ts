import { describe, expect, it } from "vitest";
import { demultiplexDockerStream } from "./stream-demux.js";

function frame(kind: number, text: string): Buffer {
  const payload = Buffer.from(text);
  const header = Buffer.alloc(8);
  header[0] = kind;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

describe("demultiplexDockerStream", () => {
  it("splits stdout and stderr frames and keeps their order in combined", () => {
    const data = Buffer.concat([frame(1, "out 1\n"), frame(2, "err 1\n"), frame(1, "out 2\n")]);
    expect(demultiplexDockerStream(data)).toEqual({
      stdout: "out 1\nout 2\n",
      stderr: "err 1\n",
      combined: "out 1\nerr 1\nout 2\n",
    });
  });

  it("keeps a multi-byte character split across frames whole", () => {
    const bytes = Buffer.from("é");
    const a = Buffer.concat([Buffer.from([1, 0, 0, 0, 0, 0, 0, 1]), bytes.subarray(0, 1)]);
    const b = Buffer.concat([Buffer.from([1, 0, 0, 0, 0, 0, 0, 1]), bytes.subarray(1)]);
    expect(demultiplexDockerStream(Buffer.concat([a, b])).stdout).toBe("é");
  });

  it("keeps a truncated last frame as far as it goes", () => {
    const full = frame(1, "hello world");
    expect(demultiplexDockerStream(full.subarray(0, 13)).stdout).toBe("hello");
  });

  it("passes raw (TTY) output and empty input through", () => {
    expect(demultiplexDockerStream(Buffer.from("plain text\n")).combined).toBe("plain text\n");
    expect(demultiplexDockerStream(Buffer.alloc(0)).combined).toBe("");
  });
});
