import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readmeTestSnippet } from "./readme-test-snippet.ts";

const root = join(import.meta.dirname, "../..");
const readme = readFileSync(join(root, "README.md"), "utf8");
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1] ?? "");

describe("README examples", () => {
  it("shows the twin of test/readme/readme-twin.ts, verbatim", () => {
    const source = readFileSync(join(import.meta.dirname, "readme-twin.ts"), "utf8");
    expect(blocks).toContain(source);
  });

  it("shows the test of test/readme/readme-test-snippet.ts, verbatim", () => {
    const source = readFileSync(join(import.meta.dirname, "readme-test-snippet.ts"), "utf8");
    const body = source.slice(source.indexOf("  const test ="), source.lastIndexOf("}"));
    const unindented = body
      .trimEnd()
      .split("\n")
      .map((line) => line.replace(/^ {2}/, ""))
      .join("\n");
    expect(blocks).toContain(`import { TestNode } from "doppel/testing";\n\n${unindented}\n`);
  });

  it("runs the README's twin test as written", async () => {
    await readmeTestSnippet();
  });
});
