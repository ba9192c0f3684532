import { TestNode } from "doppel/testing";
import { expect } from "vitest";
import { Thermostat } from "./readme-twin.ts";

/** The README's "Testing a twin" example, run as written. */
export async function readmeTestSnippet(): Promise<void> {
  const test = await TestNode.start({ twins: [Thermostat] }); // in memory, manual clock
  const t1 = test.twin(Thermostat, "t1");
  await t1.report({ temperature: 35 });
  await test.advance("6m"); // the reminder falls due
  expect((await t1.get()).state.alarm).toBe("escalated");
  await test.restart(); // same store, fresh node: state is replayed
  await expect(t1.invoke("acknowledge", {})).rejects.toThrow("still too hot");
  await test.stop();
}
