import { FailedPrecondition, type Reminder, Twin, z } from "doppel";

type Alarm = "none" | "raised" | "escalated";
type State = { setPoint: number; alarm: Alarm };
type Event = { type: "setPointChanged"; setPoint: number } | { type: "alarm"; level: Alarm };
type Reported = { temperature?: number; heating?: boolean };

export class Thermostat extends Twin<State, Event, Reported> {
  static readonly type = "thermostat"; // the `type` in `type/id`
  static readonly reported = z.object({ temperature: z.number(), heating: z.boolean() }).partial();
  static readonly commands = {
    // command name → schema of its arguments; the method of the same name handles it
    setTarget: z.object({ celsius: z.number().min(5).max(35) }),
    acknowledge: z.object({}),
  };

  initialState(): State {
    return { setPoint: 21, alarm: "none" };
  }

  apply(state: State, event: Event): State {
    switch (event.type) {
      case "setPointChanged":
        return { ...state, setPoint: event.setPoint };
      case "alarm":
        return { ...state, alarm: event.level };
    }
  }

  setTarget({ celsius }: { celsius: number }) {
    this.emit({ type: "setPointChanged", setPoint: celsius });
    this.setDesired({ heating: (this.reported.temperature ?? celsius) < celsius }); // pushed to the device
    return { setPoint: this.state.setPoint }; // the caller's result, sent once persisted
  }

  acknowledge() {
    if ((this.reported.temperature ?? 0) > 30) throw new FailedPrecondition("still too hot"); // reaches the caller
    this.emit({ type: "alarm", level: "none" });
    this.cancel("escalate");
  }

  override onReported(patch: Partial<Reported>) {
    if ((patch.temperature ?? 0) > 30 && this.state.alarm === "none") {
      this.emit({ type: "alarm", level: "raised" });
      this.schedule("escalate", { after: "5m" }); // durable: survives passivation and restarts
    }
  }

  override onReminder(reminder: Reminder) {
    if (reminder.name === "escalate" && this.state.alarm === "raised")
      this.emit({ type: "alarm", level: "escalated" });
  }
}
