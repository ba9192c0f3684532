/**
 * `limits.callTimeout` (README: "calls time out"): a twin's call to another twin that does not
 * answer ends with DEADLINE_EXCEEDED once the limit passed on the node's clock (a manual clock
 * here, moved by the test), not before, and the caller's turn goes on.
 */
import { Twin, z } from "doppel";
import { TestNode } from "doppel/testing";
import { afterEach, describe, expect, it } from "vitest";
import { settle } from "../../runtime/core/clock.ts";
import { DoppelError, ErrorCode } from "../../runtime/core/errors.ts";

let release: () => void = () => {};

class Waiter extends Twin<object, never> {
  static readonly type = "waiter";
  static readonly commands = { hang: z.object({}) };
  initialState() {
    return {};
  }
  apply(state: object) {
    return state;
  }
  /** Answers only when the test releases it. */
  async hang() {
    await new Promise<void>((resolve) => {
      release = resolve;
    });
    return { answered: true };
  }
}

class Asker extends Twin<object, never> {
  static readonly type = "asker";
  static readonly commands = { ask: z.object({}) };
  initialState() {
    return {};
  }
  apply(state: object) {
    return state;
  }
  async ask() {
    try {
      return { answer: await this.call(Waiter, "w1", "hang", {}) };
    } catch (error) {
      return { code: DoppelError.from(error).code, message: DoppelError.from(error).message };
    }
  }
}

describe("limits.callTimeout", () => {
  let test: TestNode | undefined;
  afterEach(async () => {
    release();
    await test?.stop();
  });

  it("answers a call to a twin that does not answer with DEADLINE_EXCEEDED after the limit", async () => {
    test = await TestNode.start({ twins: [Asker, Waiter], config: { limits: { callTimeout: "3s" } } });
    let settled = false;
    const asked = test.twins.invoke({ type: "asker", id: "a1" }, "ask", {}).finally(() => {
      settled = true;
    });
    // The callee holds the call; nothing answers until the node's clock passes the limit.
    await test.clock.advance(2999);
    await settle();
    expect(settled).toBe(false);
    await test.clock.advance(2);
    const { result } = await asked;
    expect(result).toMatchObject({ code: ErrorCode.DeadlineExceeded });
  });
});
