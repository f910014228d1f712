/**
 * A real HTTP server over a folder for remote-dataset tests: it counts the requests and bytes it
 * serves per file, and can flip one byte of a file's body (a corrupted transfer or origin).
 */
import { promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface FolderServer {
  /** `http://127.0.0.1:<port>` (no trailing slash). */
  base: string;
  /** Requests per file path (relative, `/`-separated), 404s included. */
  requests: Map<string, number>;
  /** Body bytes served per file path. */
  bytesServed: Map<string, number>;
  /** Files served with one byte flipped in the middle, on every request. */
  corrupt: Set<string>;
  close(): Promise<void>;
}

export async function serveFolder(root: string): Promise<FolderServer> {
  const requests = new Map<string, number>();
  const bytesServed = new Map<string, number>();
  const corrupt = new Set<string>();
  const server = http.createServer(async (req, res) => {
    const name = decodeURIComponent(new URL(req.url!, 'http://x').pathname.slice(1));
    requests.set(name, (requests.get(name) ?? 0) + 1);
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(path.join(root, name));
    } catch {
      res.writeHead(404).end('not found');
      return;
    }
    if (corrupt.has(name)) {
      bytes = Buffer.from(bytes);
      bytes[bytes.length >> 1]! ^= 0xff;
    }
    bytesServed.set(name, (bytesServed.get(name) ?? 0) + bytes.length);
    res.writeHead(200, { 'content-length': bytes.length, 'content-type': 'application/octet-stream' });
    res.end(bytes);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    bytesServed,
    corrupt,
    close: () => new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve()))),
  };
}
