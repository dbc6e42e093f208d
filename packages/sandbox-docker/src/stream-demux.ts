/**
 * Splits the Engine API's multiplexed stdout/stderr stream (logs, attach of a container
 * without a TTY): frames of an 8-byte header — stream id (1 stdout, 2 stderr), three zero bytes,
 * a big-endian uint32 length — followed by that many bytes. Returns the text in arrival order;
 * a truncated last frame is kept as far as it goes.
 */
export function demultiplexDockerStream(data: Uint8Array): {
  stdout: string;
  stderr: string;
  combined: string;
} {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (!looksMultiplexed(buf)) {
    // A container with a TTY sends its raw output unframed.
    const text = buf.toString("utf8");
    return { stdout: text, stderr: "", combined: text };
  }
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const all: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= buf.length) {
    const kind = buf[offset];
    const size = buf.readUInt32BE(offset + 4);
    const chunk = buf.subarray(offset + 8, Math.min(offset + 8 + size, buf.length));
    (kind === 2 ? err : out).push(chunk);
    all.push(chunk);
    offset += 8 + size;
  }
  return {
    stdout: Buffer.concat(out).toString("utf8"),
    stderr: Buffer.concat(err).toString("utf8"),
    combined: Buffer.concat(all).toString("utf8"),
  };
}

function looksMultiplexed(buf: Buffer): boolean {
  if (buf.length === 0) return true;
  if (buf.length < 8) return false;
  const kind = buf[0];
  return (kind === 0 || kind === 1 || kind === 2) && buf[1] === 0 && buf[2] === 0 && buf[3] === 0;
}
