import { describe, expect, it } from "vitest";
import { checkEdgeName, isEdgeName } from "../../runtime/core/edge-name.ts";
import { InvalidArgument } from "../../runtime/core/errors.ts";

describe("edge names", () => {
  it("are a letter then up to 62 letters, digits, '_' or '-'", () => {
    for (const name of ["a", "plant-a", "Plant_9", `p${"x".repeat(62)}`]) expect(isEdgeName(name)).toBe(true);
    for (const name of ["", "9lives", "-a", "plant.a", "plant a", "plant>", "plänt", `p${"x".repeat(63)}`])
      expect(isEdgeName(name)).toBe(false);
  });

  it("refuse a bad name with InvalidArgument saying the rule, on field edge", () => {
    expect(checkEdgeName("plant-a")).toBe("plant-a");
    let refused: unknown;
    try {
      checkEdgeName("plant.a", " in doppel.edge.plant.a.register");
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(InvalidArgument);
    expect(refused).toMatchObject({
      message: `edge name "plant.a" in doppel.edge.plant.a.register must be a letter then up to 62 letters, digits, '_' or '-'`,
      details: { field: "edge" },
    });
  });
});
