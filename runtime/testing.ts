/**
 * `doppel/testing`: run twins in a test. `TestNode` is a node in memory with a manual clock
 * (advance time, restart on the same store, inspect twins); `ManualClock` drives timers by hand.
 */
export { type Clock, ManualClock, settle } from "./core/clock.ts";
export { TestNode, type TestNodeOptions, TwinHandle } from "./testing/test-node.ts";
