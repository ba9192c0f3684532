/**
 * Zod issues as one readable line, for configuration, twin classes and command arguments alike.
 */
import type { z } from "zod";

/** Renders zod issues as `celsius: Too big: expected number to be <=35; mode: Invalid option...`. */
export function describeIssues(error: z.ZodError, prefix: string): string {
  return error.issues
    .map((issue) => {
      const path = [prefix, ...issue.path.map(String)].filter((p) => p !== "").join(".");
      return path ? `${path}: ${issue.message}` : issue.message;
    })
    .join("; ");
}
