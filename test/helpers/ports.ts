/** Loopback ports for tests: free ones to listen on, and closed ones to connect to. */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';

/** A TCP port on 127.0.0.1 that was free a moment ago (connections to it are refused). */
export function freeTcpPort(): Promise<number> {
  return closedPort('tcp');
}

/** A UDP port on 127.0.0.1 nobody listens on (the kernel answers ICMP port unreachable). */
export function freeUdpPort(): Promise<number> {
  return closedPort('udp');
}

/** A port the kernel gave for `kind`, released again. */
async function closedPort(kind: 'tcp' | 'udp'): Promise<number> {
  const bound = await tryBind(kind, 0);
  if (bound === undefined) throw new Error(`no free ${kind} port on 127.0.0.1`);
  await bound.close();
  return bound.port;
}

/** The first port of the kernel's ephemeral range (`ip_local_port_range`; 32768 if unreadable). */
function ephemeralFloor(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(first) && first > 0 ? first : 32768;
  } catch {
    return 32768;
  }
}

/** Binds `port` (0: any) on 127.0.0.1 for `kind`; the bound port, or undefined when it is taken. */
async function tryBind(
  kind: 'tcp' | 'udp',
  port: number,
): Promise<{ port: number; close(): Promise<void> } | undefined> {
  if (kind === 'tcp') {
    const server = net.createServer();
    const ok = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!ok) return undefined;
    return {
      port: (server.address() as net.AddressInfo).port,
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  }
  const socket = dgram.createSocket('udp4');
  const ok = await new Promise<boolean>((resolve) => {
    socket.once('error', () => resolve(false));
    socket.bind(port, '127.0.0.1', () => resolve(true));
  });
  if (!ok) {
    socket.close();
    return undefined;
  }
  return { port: socket.address().port, close: () => new Promise<void>((resolve) => socket.close(() => resolve())) };
}

/**
 * `count` distinct ports free on 127.0.0.1 for TCP and UDP both (DNS and Serf listen on both),
 * for servers a test stops and starts again on the same port.
 *
 * They are picked at random *below* the kernel's ephemeral range: no outgoing connection (the
 * test suite opens thousands) can take one while the server is down, and a client retrying it
 * cannot connect to itself there. Every socket stays bound until all are picked, so no port is
 * given twice. Another process picking the same port before the server binds it is still
 * possible: `ConsulAgent.start()` retries on a clash.
 */
export async function freePorts(count: number): Promise<number[]> {
  const floor = ephemeralFloor();
  const held: { close(): Promise<void> }[] = [];
  const ports: number[] = [];
  try {
    for (let tries = 1; ports.length < count; tries += 1) {
      const wanted = floor > 11_000 && tries < 10_000 ? 10_000 + Math.floor(Math.random() * (floor - 10_000)) : 0;
      const tcp = await tryBind('tcp', wanted);
      if (tcp === undefined) continue;
      held.push(tcp);
      const udp = await tryBind('udp', tcp.port);
      if (udp === undefined) continue;
      held.push(udp);
      ports.push(tcp.port);
    }
  } finally {
    await Promise.all(held.map((h) => h.close()));
  }
  return ports;
}
