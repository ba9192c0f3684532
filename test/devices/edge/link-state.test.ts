import { ClosedConnectionError, NoRespondersError, RequestError, TimeoutError } from "@nats-io/nats-core";
import { describe, expect, it } from "vitest";
import {
  isNoAnswer,
  LinkState,
  probeOfError,
  TIMEOUTS_BEFORE_DOWN,
} from "../../../runtime/devices/edge/link-state.ts";

describe("LinkState", () => {
  it("is down until the cloud answers, and down at once when there is no route", () => {
    const link = new LinkState();
    expect(link.up).toBe(false);
    expect(link.observe("timeout")).toBe(false);
    expect(link.observe("answered")).toBe(true);
    expect(link.observe("unreachable")).toBe(false);
  });

  it("stays up through fewer timed-out ticks in a row than TIMEOUTS_BEFORE_DOWN", () => {
    const link = new LinkState();
    link.observe("answered");
    for (let i = 1; i < TIMEOUTS_BEFORE_DOWN; i++) {
      expect(link.observe("timeout")).toBe(true);
      expect(link.timeouts).toBe(i);
    }
    // An answer resets the count: the next timeouts start again from zero.
    expect(link.observe("answered")).toBe(true);
    expect(link.timeouts).toBe(0);
    for (let i = 1; i < TIMEOUTS_BEFORE_DOWN; i++) expect(link.observe("timeout")).toBe(true);
    expect(link.observe("timeout")).toBe(false);
    expect(link.timeouts).toBe(0);
    // Down stays down on more timeouts; an answer brings it back.
    expect(link.observe("timeout")).toBe(false);
    expect(link.observe("answered")).toBe(true);
  });

  it("a timeout among the failures counts only while up; no route ends it", () => {
    const link = new LinkState();
    link.observe("answered");
    expect(link.observe("timeout")).toBe(true);
    expect(link.observe("unreachable")).toBe(false);
  });
});

describe("probeOfError", () => {
  it("tells a request's timeout from every other failure", () => {
    expect(probeOfError(new TimeoutError())).toBe("timeout");
    expect(probeOfError(new RequestError("no responders"))).toBe("unreachable");
    expect(probeOfError(new Error("connection closed"))).toBe("unreachable");
  });
});

describe("isNoAnswer", () => {
  it("is a timeout or no responders as nats.js types them, never a message that reads like one", () => {
    const noResponders = new NoRespondersError("doppel.edge.plant-a.revocations");
    expect(isNoAnswer(new TimeoutError())).toBe(true);
    expect(isNoAnswer(noResponders)).toBe(true);
    // What nc.request rejects with when no one listens.
    expect(isNoAnswer(new RequestError(noResponders.message, { cause: noResponders }))).toBe(true);
    // What it rejects with when its connection closes while it waits.
    const closed = new RequestError("connection closed");
    expect(isNoAnswer(new RequestError(closed.message, { cause: closed }))).toBe(false);
    expect(isNoAnswer(new ClosedConnectionError())).toBe(false);
    expect(isNoAnswer(new Error("timeout"))).toBe(false);
    expect(isNoAnswer(new Error("no responders"))).toBe(false);
  });
});
