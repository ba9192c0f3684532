/**
 * What one device may do on NATS: exactly its own twin's subjects. These go into the user JWT the
 * auth callout returns, so the NATS server itself refuses anything else (a publish on another
 * twin's or a node's subject is a permission violation, the message never leaves the server).
 *
 * - publish: `doppel.dev.<type>.<id>.{reported,telemetry,sync,cmd-result}`, and one reply to each
 *   request it received (a command on `.cmd`), through `resp`;
 * - subscribe: `doppel.dev.<type>.<id>.{desired,cmd,errors}` and its own inbox
 *   `_INBOX.doppel.<type>.<id>.>` (sync replies and JetStream PubAcks arrive there).
 *
 * MQTT clients get the same permissions: the MQTT listener maps `doppel/dev/<type>/<id>/reported`
 * to `doppel.dev.<type>.<id>.reported` and checks them on the converted subject (a SUBACK failure
 * for another device's topic; its QoS 1 deliveries and sessions are the server's own business).
 */
import type { TwinRef } from "../../core/ids.ts";
import { DeviceChannel, deviceInboxPrefix, deviceSubject } from "../protocol.ts";

/** The permissions of one device's connection (the `nats` part of its user JWT). */
export interface DevicePermissions {
  readonly pub: { readonly allow: string[] };
  readonly sub: { readonly allow: string[] };
  readonly resp: { readonly max: number; readonly ttl: number };
}

const PUBLISH: readonly DeviceChannel[] = [
  DeviceChannel.Reported,
  DeviceChannel.Telemetry,
  DeviceChannel.Sync,
  DeviceChannel.CommandResult,
];
const SUBSCRIBE: readonly DeviceChannel[] = [
  DeviceChannel.Desired,
  DeviceChannel.Command,
  DeviceChannel.Errors,
];

/** The permissions of device `ref` (NATS and MQTT clients alike). */
export function devicePermissions(ref: TwinRef): DevicePermissions {
  const sub = [...SUBSCRIBE.map((channel) => deviceSubject(ref, channel)), `${deviceInboxPrefix(ref)}.>`];
  return {
    pub: { allow: PUBLISH.map((channel) => deviceSubject(ref, channel)) },
    sub: { allow: sub },
    // One reply per command request, within the command timeout's order of magnitude.
    resp: { max: 1, ttl: 0 },
  };
}
