package schema

import (
	"fmt"
	"strings"
)

// Function is a user-defined function that may write tables: a statement
// that calls it writes what no RETURNING of the statement shows.
type Function struct {
	Schema, Name string
	// Reason says why it may write: the table its body writes, dynamic
	// SQL, a call of another function that may, or a language this
	// package does not analyze.
	Reason string
}

// writingFunctions finds, among the user-defined functions, those that may
// write tables. Only VOLATILE functions can (PostgreSQL refuses writes in
// STABLE and IMMUTABLE ones), and the functions of extensions are trusted
// not to. The bodies of SQL and PL/pgSQL functions are parsed as trigger
// functions are (analyzeTrigger); a function in another language
// (plpython, C) may do anything.
func writingFunctions(funcs userFuncs) map[string][]Function {
	out := map[string][]Function{}
	for name, fs := range funcs {
		for _, f := range fs {
			if !f.volatile || f.extension {
				continue
			}
			reason := ""
			switch f.language {
			case "plpgsql":
				a := triggerAnalysis{funcs: funcs}
				a.run(f.def)
				reason = a.reason
			case "sql":
				a := triggerAnalysis{funcs: funcs}
				body := f.src
				if strings.TrimSpace(body) == "" {
					body = f.def // BEGIN ATOMIC: the statements are in the definition
				}
				a.sql(body)
				reason = a.reason
			default:
				reason = fmt.Sprintf("it is in language %s, which is not analyzed", f.language)
			}
			if reason != "" {
				out[name] = append(out[name], Function{Schema: f.schema, Name: name, Reason: reason})
			}
		}
	}
	return out
}

// FunctionMayWrite returns why a call of the named function (as a statement
// names it: "f" or "schema.f") may write tables, or "" when it does not
// (not a user-defined function, or one that cannot write). An unqualified
// name counts any function of that name, whatever the search_path.
func (c *Catalog) FunctionMayWrite(name string) string {
	if c == nil || len(c.Functions) == 0 {
		return ""
	}
	schema, base := "", name
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		schema, base = name[:i], name[i+1:]
	}
	for _, f := range c.Functions[base] {
		if schema == "" || f.Schema == schema {
			return fmt.Sprintf("%s.%s: %s", f.Schema, f.Name, f.Reason)
		}
	}
	return ""
}
