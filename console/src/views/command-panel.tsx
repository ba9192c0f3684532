/**
 * Invokes a command (POST /v1/twins/{type}/{id}/commands/{command}) from a form generated from the
 * command's JSON Schema; the input is checked against the schema before sending (each field shows
 * its own error), and the node's answer, or its refusal, is shown under the form.
 */
import { useState } from "preact/hooks";
import { type ApiError, type Json, type JsonObject, request, twinPath } from "../api.ts";
import { num, type TypeDetail } from "../model.ts";
import { type FieldInput, type FormField, fieldsOf, validate } from "../schema.ts";
import { ErrorNote } from "./widgets.tsx";

interface Props {
  readonly type: string;
  readonly id: string;
  readonly detail: TypeDetail | null;
}

interface Outcome {
  readonly command: string;
  readonly result: Json;
  readonly version: number;
}

export function CommandPanel({ type, id, detail }: Props) {
  const commands = detail?.commands ?? [];
  const [command, setCommand] = useState("");
  const chosen = command || commands[0] || "";
  const schema: JsonObject = detail?.commandSchemas?.[chosen] ?? { type: "object", properties: {} };
  const fields = fieldsOf(schema);
  const [inputs, setInputs] = useState<Record<string, FieldInput>>({});
  const [errors, setErrors] = useState<Readonly<Record<string, string>>>({});
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const [failure, setFailure] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const choose = (name: string) => {
    setCommand(name);
    setInputs({});
    setErrors({});
    setOutcome(null);
    setFailure(null);
  };

  const submit = async (event: Event) => {
    event.preventDefault();
    const checked = validate(fields, inputs);
    setErrors(checked.errors);
    setOutcome(null);
    setFailure(null);
    if (Object.keys(checked.errors).length > 0) {
      const first = fields.find((field) => checked.errors[field.name]);
      if (first) document.getElementById(`arg-${first.name}`)?.focus();
      return;
    }
    setBusy(true);
    try {
      const answer = await request<{ result?: Json; version?: number | string }>(
        `${twinPath(type, id)}/commands/${encodeURIComponent(chosen)}`,
        { method: "POST", body: checked.args },
      );
      setOutcome({ command: chosen, result: answer?.result ?? null, version: num(answer?.version) });
    } catch (caught) {
      setFailure(caught as ApiError);
    } finally {
      setBusy(false);
    }
  };

  if (!detail) return null;
  return (
    <section aria-labelledby="command-title" class="card">
      <h2 id="command-title">Invoke a command</h2>
      {commands.length === 0 ? (
        <p>This type has no commands.</p>
      ) : (
        <form onSubmit={submit} noValidate>
          <label for="command-name">Command</label>
          <select
            id="command-name"
            value={chosen}
            onChange={(e) => choose((e.target as HTMLSelectElement).value)}
          >
            {commands.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
          {typeof schema["description"] === "string" && <p class="muted">{schema["description"]}</p>}
          <fieldset>
            <legend>Arguments of {chosen}</legend>
            {fields.length === 0 && <p class="muted">No arguments.</p>}
            {fields.map((field) => (
              <ArgumentField
                key={`${chosen}.${field.name}`}
                field={field}
                value={inputs[field.name]}
                error={errors[field.name]}
                onChange={(value) => setInputs({ ...inputs, [field.name]: value })}
              />
            ))}
          </fieldset>
          <button type="submit" disabled={busy}>
            Invoke {chosen}
          </button>
        </form>
      )}
      {outcome && (
        <output class="ok" data-testid="command-result" aria-live="polite">
          <strong>{outcome.command}</strong> done: the twin is at version {outcome.version}. Result:
          <pre>{JSON.stringify(outcome.result, null, 2)}</pre>
        </output>
      )}
      {failure && <ErrorNote error={failure} title={`${chosen} refused`} />}
    </section>
  );
}

/** What the schema says of a field, for its hint. */
function hint(field: FormField): string {
  const parts: string[] = [field.kind === "integer" ? "whole number" : field.kind];
  if (field.minimum !== undefined) parts.push(`≥ ${field.minimum}`);
  if (field.maximum !== undefined) parts.push(`≤ ${field.maximum}`);
  if (field.maxLength !== undefined) parts.push(`up to ${field.maxLength} characters`);
  if (!field.required) parts.push("optional");
  return [field.description, parts.join(", ")].filter(Boolean).join(" — ");
}

interface FieldProps {
  readonly field: FormField;
  readonly value: FieldInput | undefined;
  readonly error: string | undefined;
  readonly onChange: (value: FieldInput) => void;
}

function ArgumentField({ field, value, error, onChange }: FieldProps) {
  const id = `arg-${field.name}`;
  const described = `${id}-hint${error ? ` ${id}-error` : ""}`;
  const common = {
    id,
    name: field.name,
    "aria-describedby": described,
    "aria-invalid": error ? true : undefined,
    "aria-required": field.required ? true : undefined,
  } as const;
  const text = typeof value === "string" ? value : "";
  return (
    <div class={field.kind === "boolean" ? "field check" : "field"}>
      {field.kind === "boolean" ? (
        <>
          <input
            {...common}
            type="checkbox"
            checked={value === true}
            onChange={(e) => onChange((e.target as HTMLInputElement).checked)}
          />
          <label for={id}>{field.name}</label>
        </>
      ) : (
        <>
          <label for={id}>{field.name}</label>
          {field.kind === "enum" ? (
            <select
              {...common}
              value={text}
              onChange={(e) => onChange((e.target as HTMLSelectElement).value)}
            >
              <option value="">(choose)</option>
              {field.options?.map((option) => (
                <option key={String(option)} value={String(option)}>
                  {String(option)}
                </option>
              ))}
            </select>
          ) : field.kind === "json" ? (
            <textarea
              {...common}
              rows={3}
              value={text}
              onInput={(e) => onChange((e.target as HTMLTextAreaElement).value)}
            />
          ) : field.kind === "string" ? (
            <input
              {...common}
              type="text"
              value={text}
              onInput={(e) => onChange((e.target as HTMLInputElement).value)}
            />
          ) : (
            <input
              {...common}
              type="number"
              step={field.kind === "integer" ? 1 : "any"}
              value={text}
              onInput={(e) => onChange((e.target as HTMLInputElement).value)}
            />
          )}
        </>
      )}
      <small id={`${id}-hint`}>{hint(field)}</small>
      {error && (
        <small id={`${id}-error`} class="field-error">
          {error}
        </small>
      )}
    </div>
  );
}
