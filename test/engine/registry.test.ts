import { InvalidArgument, NotFound, Twin, type TwinClass, z } from "doppel";
import { describe, expect, it } from "vitest";
import { TwinRegistry } from "../../runtime/engine/twin-type.ts";

const defaults = { snapshotEvery: 100, idleTimeoutMs: 60_000 };

class Lamp extends Twin<{ readonly level: number }, { readonly type: "dimmed"; readonly level: number }> {
  static readonly type: string = "lamp";
  static readonly commands = { dim: z.object({ level: z.number().min(0).max(100) }) };
  initialState() {
    return { level: 0 };
  }
  apply(_: { readonly level: number }, event: { readonly type: "dimmed"; readonly level: number }) {
    return { level: event.level };
  }
  dim({ level }: { level: number }) {
    this.emit({ type: "dimmed", level });
  }
}

describe("twin registry", () => {
  it("refuses a second class under the same type name", () => {
    const registry = new TwinRegistry(defaults);
    registry.register(Lamp);
    class OtherLamp extends Lamp {}
    expect(() => registry.register(OtherLamp)).toThrow(
      "twin type 'lamp' is already registered (by class Lamp)",
    );
  });

  it("refuses a class without a valid type name", () => {
    class Nameless extends Lamp {
      static override readonly type = "has space";
    }
    expect(() => new TwinRegistry(defaults).register(Nameless)).toThrow(InvalidArgument);
  });

  it("refuses a command without a handler method", () => {
    class Broken extends Lamp {
      static override readonly type = "broken";
      static override readonly commands = { ...Lamp.commands, flash: z.object({}) };
    }
    expect(() => new TwinRegistry(defaults).register(Broken as unknown as TwinClass)).toThrow(
      "declares command 'flash' but has no method 'flash'",
    );
  });

  it("refuses command names that shadow twin members or hooks", () => {
    for (const name of ["emit", "schedule", "cancel", "apply", "onReported", "constructor"]) {
      class Clash extends Lamp {
        static override readonly type = "clash";
        static override readonly commands = { [name]: z.object({}) } as never;
      }
      expect(() => new TwinRegistry(defaults).register(Clash)).toThrow("cannot be a command name");
    }
  });

  it("names the registered types when asked for an unknown one", () => {
    const registry = new TwinRegistry(defaults);
    registry.register(Lamp);
    expect(() => registry.get("pump")).toThrow(NotFound);
    expect(() => registry.get("pump")).toThrow("unknown twin type 'pump' (registered: lamp)");
  });

  it("validates command arguments with the command's schema and names the field", () => {
    const type = new TwinRegistry(defaults).register(Lamp);
    expect(type.parseCommand("dim", { level: 50 })).toEqual({ level: 50 });
    expect(() => type.parseCommand("dim", { level: 500 })).toThrow("invalid arguments for lamp.dim: level:");
    expect(() => type.parseCommand("blink", {})).toThrow(
      "twin type 'lamp' has no command 'blink' (commands: dim)",
    );
  });
});
