// The address of the client a request really comes from, for Better Auth's sign-in rate limit.
//
// Better Auth keys its limit on the X-Forwarded-For header, and Next.js only fills that header
// from the socket when the request does not carry one: a client could name a new address on every
// try and never be limited. So this server replaces the header, before Next.js sees the request,
// with one address: the socket's peer, unless that peer is a proxy named in TRUSTED_PROXIES, in
// which case the proxies' chain is read from the right and the first address that is not a
// trusted proxy is the client. Without TRUSTED_PROXIES no header from the client is believed.

import { EventEmitter } from "node:events";
import type { IncomingMessage } from "node:http";
import http from "node:http";
import { BlockList, isIP } from "node:net";

import { env } from "./env";

function plain(address: string): string {
  // An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
  return address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

// TRUSTED_PROXIES: addresses or CIDR ranges, separated by commas. A malformed entry stops the
// server with the variable's name rather than being ignored.
export function trustedProxies(value = env("TRUSTED_PROXIES")): BlockList {
  const list = new BlockList();
  for (const entry of (value ?? "").split(",").map((e) => e.trim()).filter(Boolean)) {
    const [address, prefix] = entry.split("/");
    const family = isIP(address ?? "");
    const bits = prefix === undefined ? (family === 4 ? 32 : 128) : Number(prefix);
    if (!family || !Number.isInteger(bits) || bits < 0 || bits > (family === 4 ? 32 : 128) || (prefix !== undefined && !/^\d+$/.test(prefix))) {
      throw new Error(`TRUSTED_PROXIES holds "${entry}", which is not an IP address or CIDR range (e.g. 10.0.0.5 or 172.16.0.0/12)`);
    }
    list.addSubnet(address!, bits, family === 4 ? "ipv4" : "ipv6");
  }
  return list;
}

function trusted(list: BlockList, address: string): boolean {
  const family = isIP(address);
  return family !== 0 && list.check(address, family === 4 ? "ipv4" : "ipv6");
}

// The client's address: `peer` itself, or, when `peer` is a trusted proxy, the right-most address
// of `forwardedFor` that is not one.
export function clientAddress(peer: string, forwardedFor: string | undefined, proxies: BlockList): string {
  let client = plain(peer);
  if (!trusted(proxies, client) || !forwardedFor) return client;
  const hops = forwardedFor.split(",").map((hop) => plain(hop.trim())).filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!;
    if (isIP(hop) === 0) break; // garbage in the chain: stop at the last proxy we trust
    client = hop;
    if (!trusted(proxies, hop)) break;
  }
  return client;
}

let installed = false;

// Makes every HTTP server of this process see X-Forwarded-For as the client's address alone.
// Called once at startup (instrumentation.ts), before the first request.
export function installClientAddress(): void {
  if (installed) return;
  installed = true;
  const proxies = trustedProxies();
  const emit = EventEmitter.prototype.emit;
  http.Server.prototype.emit = function (this: http.Server, event: string | symbol, ...args: unknown[]) {
    if (event === "request") {
      const request = args[0] as IncomingMessage;
      const peer = request.socket?.remoteAddress;
      const forwarded = request.headers["x-forwarded-for"];
      if (peer) {
        request.headers["x-forwarded-for"] = clientAddress(peer, Array.isArray(forwarded) ? forwarded.join(",") : forwarded, proxies);
      } else {
        delete request.headers["x-forwarded-for"];
      }
      delete request.headers["x-real-ip"];
    }
    return emit.call(this, event, ...args);
  } as typeof http.Server.prototype.emit;
}
