// Command dockerfile-check checks the Doppel Dockerfile without a container engine or network:
//
//  1. BuildKit's own Dockerfile front end parses it and runs its build checks (the rules of
//     `docker build --check`: casing, JSON-form CMD/ENTRYPOINT, undefined variables, legacy
//     ENV syntax, ...). Base images are not pulled: a stand-in resolver gives each base image
//     an empty configuration, so rules that need a base image's own settings see none.
//  2. The final stage has what docs/deploy.md promises: the slim base, a non-root USER 10001,
//     WORKDIR /app, the data VOLUME, the ENTRYPOINT, CMD, EXPOSE, STOPSIGNAL and the gRPC
//     HEALTHCHECK.
//
// Usage: dockerfile-check Dockerfile. Exit 0 when clean; 1 with one line per problem.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/solver/pb"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// offlineResolver answers every base image with an empty linux/amd64 configuration.
type offlineResolver struct{}

func (offlineResolver) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	config, err := json.Marshal(ocispecs.Image{
		Platform: ocispecs.Platform{OS: "linux", Architecture: "amd64"},
		Config: ocispecs.ImageConfig{
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		},
	})
	if err != nil {
		return "", "", nil, err
	}
	return ref, digest.FromBytes(config), config, nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: dockerfile-check Dockerfile")
		os.Exit(2)
	}
	path := os.Args[1]
	data, err := os.ReadFile(path)
	if err != nil {
		fail(err.Error())
	}
	problems := lint(path, data)
	problems = append(problems, promised(path, data)...)
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(os.Stderr, "[deploy]   %s\n", p)
		}
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "[deploy]   %s: parsed, BuildKit build checks clean, final stage as documented\n", path)
}

func fail(message string) {
	fmt.Fprintf(os.Stderr, "dockerfile-check: %s\n", message)
	os.Exit(1)
}

// lint runs BuildKit's Dockerfile lint (the `docker build --check` subrequest) on every stage.
func lint(path string, data []byte) []string {
	sourceMap := llb.NewSourceMap(nil, path, "Dockerfile", data)
	sourceMap.Definition = &llb.Definition{} // the lint report's source: the file alone
	results, err := dockerfile2llb.DockerfileLint(context.Background(), data, dockerfile2llb.ConvertOpt{
		SourceMap:    sourceMap,
		MetaResolver: offlineResolver{},
	})
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", path, err)}
	}
	var problems []string
	if results.Error != nil {
		problems = append(problems, fmt.Sprintf("%s:%s: %s", path, line(results.Error.Location.Ranges), results.Error.Message))
	}
	for _, w := range results.Warnings {
		at := "?"
		if w.Location != nil {
			at = line(w.Location.Ranges)
		}
		problems = append(problems, fmt.Sprintf("%s:%s: %s: %s (%s)", path, at, w.RuleName, w.Detail, w.URL))
	}
	return problems
}

func line(ranges []*pb.Range) string {
	if len(ranges) == 0 || ranges[0].GetStart() == nil {
		return "?"
	}
	return fmt.Sprint(ranges[0].GetStart().GetLine())
}

// instruction is one parsed line: its name (upper case), arguments, flags and JSON form.
type instruction struct {
	name  string
	args  []string
	flags []string
	json  bool
	line  int
}

func (i instruction) joined() string { return strings.Join(i.args, " ") }

// promised checks the final stage against what the image documents.
func promised(path string, data []byte) []string {
	result, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", path, err)}
	}
	var stages [][]instruction
	for _, node := range result.AST.Children {
		in := instruction{name: strings.ToUpper(node.Value), flags: node.Flags, json: node.Attributes["json"], line: node.StartLine}
		for n := node.Next; n != nil; n = n.Next {
			in.args = append(in.args, n.Value)
		}
		if in.name == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], in)
		}
	}
	if len(stages) < 2 {
		return []string{fmt.Sprintf("%s: expected a build stage and a runtime stage, found %d stage(s)", path, len(stages))}
	}
	final := stages[len(stages)-1]
	var problems []string
	expect := func(name string, want string, ok func(instruction) bool) {
		var last *instruction
		for i := range final {
			if final[i].name == name {
				last = &final[i]
			}
		}
		if last == nil {
			problems = append(problems, fmt.Sprintf("%s: final stage has no %s (want %s)", path, name, want))
		} else if !ok(*last) {
			problems = append(problems, fmt.Sprintf("%s:%d: %s %s (want %s)", path, last.line, name, last.joined(), want))
		}
	}
	exact := func(want ...string) func(instruction) bool {
		return func(i instruction) bool { return strings.Join(i.args, "\x00") == strings.Join(want, "\x00") }
	}
	expect("FROM", "node:20-bookworm-slim", func(i instruction) bool { return len(i.args) > 0 && i.args[0] == "node:20-bookworm-slim" })
	expect("USER", "10001:10001 (non-root)", exact("10001:10001"))
	expect("WORKDIR", "/app", exact("/app"))
	expect("VOLUME", "/var/lib/doppel", exact("/var/lib/doppel"))
	expect("EXPOSE", "50051 9464", exact("50051", "9464"))
	expect("STOPSIGNAL", "SIGTERM", exact("SIGTERM"))
	expect("ENTRYPOINT", `["node","/app/bin/doppel.js"]`, func(i instruction) bool {
		return i.json && exact("node", "/app/bin/doppel.js")(i)
	})
	expect("CMD", `["start"]`, func(i instruction) bool { return i.json && exact("start")(i) })
	expect("HEALTHCHECK", "CMD node /app/bin/doppel.js health --server 127.0.0.1:50051", func(i instruction) bool {
		return strings.Contains(i.joined(), "node /app/bin/doppel.js health --server 127.0.0.1:50051")
	})
	for _, in := range final {
		if in.name == "COPY" {
			for _, flag := range in.flags {
				if strings.HasPrefix(flag, "--from=") && flag != "--from=build" {
					problems = append(problems, fmt.Sprintf("%s:%d: COPY %s: the runtime stage copies only from the build stage", path, in.line, flag))
				}
			}
		}
	}
	return problems
}
