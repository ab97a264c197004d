// GPS web UI: the live parts of the pages and the run form. No framework and no build step.
// Every value from the server is put into the page as text (textContent, value), never as markup.
"use strict";

(function () {
  const dataElement = document.getElementById("page-data");
  if (!dataElement) return;
  const page = JSON.parse(dataElement.textContent);

  // MARK: Helpers

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name === "value") node.value = value;
      else if (name === "checked") node.checked = !!value;
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  async function api(method, url, body) {
    const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (method !== "GET") {
      options.headers["Content-Type"] = "application/json";
      options.body = typeof body === "string" ? body : JSON.stringify(body || {});
    }
    const response = await fetch(url, options);
    let json = null;
    try { json = await response.json(); } catch (_) { json = null; }
    return { status: response.status, ok: response.ok, json };
  }

  function errorText(answer) {
    return (answer.json && answer.json.error && answer.json.error.message) || "HTTP " + answer.status;
  }

  /// Replaces the page's main content with the server's current rendering of the same URL. A call
  /// while a fetch is in flight makes one more fetch after it: the one in flight may have been
  /// answered before what the call was told of, and the page would show an older state for good
  /// (a run left "Cancelling" after its Cancelled event, when the two came during one fetch).
  let refreshing = null;
  let refreshAgain = false;
  function refreshMain() {
    if (refreshing) { refreshAgain = true; return refreshing; }
    refreshing = (async () => {
      try {
        do {
          refreshAgain = false;
          const response = await fetch(location.href, { credentials: "same-origin" });
          if (!response.ok) return;
          const next = new DOMParser().parseFromString(await response.text(), "text/html");
          const main = next.getElementById("main");
          if (main) {
            document.getElementById("main").replaceChildren(...main.childNodes);
            bindRunActions();
          }
        } while (refreshAgain);
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  // MARK: Runs

  function runRow(run) {
    const state = run.state || "";
    return el(
      "tr", { "data-run": run.id },
      el("td", {}, el("input", { type: "checkbox", class: "select", value: run.id, "aria-label": "select run" })),
      el("td", {}, el("a", { href: "/runs/" + run.id, class: "mono", text: run.id.slice(0, 8) })),
      el("td", {}, el("a", { href: "/deployments/" + run.deployment, text: run.deployment })),
      el("td", {}, el("span", { class: "state state-" + state.toLowerCase(), text: state })),
      el("td", { class: "time", text: time(run.state_since_micros) }),
      el("td", { class: "time", text: time(run.enqueued_at_micros) }),
      el("td", { text: (run.tags || []).join(", ") })
    );
  }

  function time(micros) {
    if (!micros || micros === "0") return "";
    return new Date(Number(micros) / 1000).toISOString().slice(0, 23) + "Z";
  }

  function selectedRuns() {
    return [...document.querySelectorAll("#runs input.select:checked")].map((box) => box.value);
  }

  async function actOnSelected(action) {
    const ids = selectedRuns();
    const result = document.getElementById("action-result");
    if (ids.length === 0) { result.textContent = "Select runs first."; return; }
    const refused = [];
    for (const id of ids) {
      const answer = await api("POST", `/api/runs/${id}/${action}`, {});
      if (!answer.ok) refused.push(id.slice(0, 8) + ": " + errorText(answer));
    }
    const done = ids.length - refused.length;
    result.textContent = `${action === "cancel" ? "Cancelled" : "Retried"} ${done} of ${ids.length}` +
      (refused.length ? "; " + refused.join("; ") : "");
    await refreshRuns();
  }

  async function refreshRuns() {
    const answer = await api("GET", "/api/runs?" + page.query);
    if (!answer.ok) return;
    const body = document.querySelector("#runs tbody");
    const checked = new Set(selectedRuns());
    body.replaceChildren(...(answer.json.runs || []).map(runRow));
    for (const box of body.querySelectorAll("input.select")) box.checked = checked.has(box.value);
  }

  function runsPage() {
    document.getElementById("select-all").addEventListener("change", (event) => {
      for (const box of document.querySelectorAll("#runs input.select")) box.checked = event.target.checked;
    });
    // Absent when the signed-in role may not change runs.
    document.getElementById("cancel-selected")?.addEventListener("click", () => actOnSelected("cancel"));
    document.getElementById("retry-selected")?.addEventListener("click", () => actOnSelected("retry"));
    if (page.live) setInterval(() => { if (!document.hidden) refreshRuns(); }, 2000);
  }

  // MARK: Run

  function bindRunActions() {
    for (const [id, action] of [["cancel-run", "cancel"], ["retry-run", "retry"]]) {
      const button = document.getElementById(id);
      if (!button || button.dataset.bound) continue;
      button.dataset.bound = "yes";
      button.addEventListener("click", async () => {
        const answer = await api("POST", `/api/runs/${page.run}/${action}`, {});
        document.getElementById("action-result").textContent =
          answer.ok ? (action === "cancel" ? "Cancel requested." : "Scheduled again.") : errorText(answer);
        if (answer.ok) {
          await refreshMain();
          if (action === "retry") follow(page.run);
        }
      });
    }
  }

  let source = null;
  function follow(run) {
    if (source) source.close();
    source = new EventSource(`/api/runs/${run}/stream?after=${page.after}`);
    source.onmessage = (message) => { if (message.lastEventId) page.after = message.lastEventId; refreshMain(); };
    source.addEventListener("end", () => { source.close(); source = null; refreshMain(); });
  }

  function runPage() {
    bindRunActions();
    if (page.live) follow(page.run);
  }

  // MARK: History

  function historyPage() {
    document.getElementById("verify").addEventListener("click", async () => {
      const out = document.getElementById("verify-result");
      out.textContent = "Verifying…";
      const answer = await api("POST", "/api/history/verify", {});
      if (!answer.ok) { out.textContent = errorText(answer); return; }
      const report = answer.json;
      out.textContent = report.ok
        ? `Intact: ${report.records} events in ${report.batches} batches, ${report.segments} segments, ` +
          `checksums and hash chain verified up to sequence ${report.last_sequence}` +
          (report.anchor_first_sequence ? ` (from the anchor at ${report.anchor_first_sequence})` : "")
        : "Damaged: " + report.problem;
    });
    if (!page.live) return;
    const query = page.run ? "&run=" + encodeURIComponent(page.run) : "";
    const events = new EventSource(`/api/history/stream?after=${page.after}${query}`);
    const body = document.querySelector("#history tbody");
    events.onmessage = (message) => {
      const entry = JSON.parse(message.data);
      const event = entry.event || {};
      const kind = Object.keys(event).find((key) => !["time_micros", "run_id", "run_event"].includes(key)) || "";
      const run = event.run_id || "";
      body.append(el(
        "tr", { "data-sequence": entry.sequence },
        el("td", { class: "mono", text: entry.sequence }),
        el("td", { class: "time", text: time(event.time_micros) }),
        el("td", {}, run ? el("a", { href: "/runs/" + run, class: "mono", text: run.slice(0, 8) }) : null),
        el("td", { text: kind }),
        el("td", { class: "details", text: JSON.stringify(event[kind] || {}).slice(0, 300) })
      ));
    };
  }

  // MARK: The run form
  //
  // One JSON value is the truth. The form edits it in place; the JSON tab edits its text. Moving
  // from the JSON tab to the form parses the text (big integers stay exact, as strings); moving
  // back shows the text as it was unless the form changed something.

  /// JSON.parse, except that integers beyond 2^53 are kept as their digits (a string), which the
  /// validator takes for 64-bit fields: nothing is rounded on the way through the form.
  function parseJSON(text) {
    let at = 0;
    const fail = (what) => { throw new SyntaxError(`${what} at character ${at + 1}`); };
    const space = () => { while (at < text.length && " \t\n\r".includes(text[at])) at++; };
    function value() {
      space();
      const c = text[at];
      if (c === "{") {
        at++; const object = {}; space();
        if (text[at] === "}") { at++; return object; }
        for (;;) {
          space(); if (text[at] !== '"') fail("expected a string key");
          const key = string(); space();
          if (text[at] !== ":") fail("expected ':'"); at++;
          object[key] = value(); space();
          if (text[at] === ",") { at++; continue; }
          if (text[at] === "}") { at++; return object; }
          fail("expected ',' or '}'");
        }
      }
      if (c === "[") {
        at++; const array = []; space();
        if (text[at] === "]") { at++; return array; }
        for (;;) {
          array.push(value()); space();
          if (text[at] === ",") { at++; continue; }
          if (text[at] === "]") { at++; return array; }
          fail("expected ',' or ']'");
        }
      }
      if (c === '"') return string();
      for (const [word, result] of [["true", true], ["false", false], ["null", null]]) {
        if (text.startsWith(word, at)) { at += word.length; return result; }
      }
      const match = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(at));
      if (!match) fail("unexpected text");
      at += match[0].length;
      const number = Number(match[0]);
      if (!match[2] && !match[3] && !Number.isSafeInteger(number)) return match[0];
      return number;
    }
    function string() {
      const start = at;
      at++;
      while (at < text.length && text[at] !== '"') at += text[at] === "\\" ? 2 : 1;
      if (at >= text.length) fail("unterminated string");
      at++;
      return JSON.parse(text.slice(start, at));
    }
    const result = value();
    space();
    if (at < text.length) fail("unexpected text after the value");
    return result;
  }

  function deploymentPage() {
    const root = page.schema || { type: "object", properties: {} };
    const definitions = root.$defs || {};
    const resolve = (schema) => {
      let seen = 0;
      // An optional parameter is `anyOf` its type and null (null: not set, the default applies).
      while (schema && (schema.$ref || schema.anyOf) && seen++ < 32) {
        schema = schema.anyOf
          ? schema.anyOf.find((s) => s.type !== "null") || {}
          : definitions[schema.$ref.replace("#/$defs/", "")] || {};
      }
      return schema || {};
    };
    const state = { value: {}, text: "", formEdited: false, view: "form", problems: {} };
    state.value = page.initial && typeof page.initial === "object" ? page.initial : {};
    for (const [name, schema] of Object.entries(root.properties || {})) {
      if (!(name in state.value) && schema.default !== undefined) state.value[name] = schema.default;
    }
    state.text = JSON.stringify(state.value, null, 2);

    const formView = document.getElementById("form-view");
    const jsonView = document.getElementById("json-view");
    const jsonText = document.getElementById("json-text");
    const jsonError = document.getElementById("json-error");
    const formError = document.getElementById("form-error");

    // Required messages not in the value yet are edited in a detached object, which joins the
    // value at its first edit: showing a form adds nothing to the value.
    let detached = [];
    function edited() {
      for (let changed = true; changed;) {
        changed = false;
        for (const entry of detached) {
          if (!Object.prototype.hasOwnProperty.call(entry.holder, entry.key) && Object.keys(entry.child).length > 0) {
            entry.holder[entry.key] = entry.child;
            changed = true;
          }
        }
      }
      state.formEdited = true;
      state.text = JSON.stringify(state.value, null, 2);
    }

    function kindOf(schema) {
      schema = resolve(schema);
      if (schema.oneOf && schema.oneOf.some((s) => s.type === "string" && s.pattern)) return "int64";
      if (schema.oneOf && schema.oneOf.some((s) => s.type === "number")) return "float";
      if (schema.enum) return "enum";
      const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
      if (type === "object" && schema.properties) return "message";
      if (type === "object" && schema.additionalProperties && typeof schema.additionalProperties === "object") return "map";
      if (type === "array" && schema.items) return "list";
      if (type === "string" && schema.format === "date-time") return "timestamp";
      if (type === "string" && schema.contentEncoding === "base64") return "bytes";
      if (type === "string") return "string";
      if (type === "integer") return "integer";
      if (type === "number") return "float";
      if (type === "boolean") return "boolean";
      return "json";
    }

    const childPath = (path, key) => (path ? `${path}.${key}` : key);

    function errorFor(path) {
      return el("p", { class: "field-error", "data-error-for": path, text: state.problems[path] || "" });
    }

    /// An editor for the value at `holder[key]`, whose validator path is `path`.
    function editor(schema, holder, key, path, label, required, description) {
      const kind = kindOf(schema);
      const resolved = resolve(schema);
      const present = Object.prototype.hasOwnProperty.call(holder, key);
      const field = el("div", { class: "field" + (present ? "" : " unset"), "data-path": path, "data-kind": kind });
      const heading = el("label", { text: label });
      if (kind !== "message") heading.append(el("span", { class: "hint", text: hintOf(kind, resolved) }));
      field.append(heading);
      if (description) field.append(el("p", { class: "description", text: description }));
      const set = (value) => { holder[key] = value; field.classList.remove("unset"); edited(); };
      const unset = () => { delete holder[key]; edited(); render(); };
      const clear = !required && present && kind !== "message"
        ? el("button", { type: "button", class: "unset-button", title: "leave unset", onclick: unset, text: "unset" })
        : null;
      switch (kind) {
        case "message": {
          const box = el("fieldset", { class: "message" }, el("legend", { text: label }));
          if (!required) {
            box.append(el("label", { class: "include" },
              el("input", {
                type: "checkbox", checked: present, "data-include": path,
                onchange: (event) => { if (event.target.checked) holder[key] = {}; else delete holder[key]; edited(); render(); },
              }), " set"));
          }
          if (present) {
            if (typeof holder[key] !== "object" || holder[key] === null || Array.isArray(holder[key])) {
              box.append(el("p", { class: "field-error", text: "not an object here; edit it in the JSON tab" }));
            } else {
              box.append(...messageFields(resolved, holder[key], path));
            }
          } else if (required) {
            const child = {};
            detached.push({ holder, key, child });
            box.append(...messageFields(resolved, child, path));
          }
          box.append(errorFor(path));
          return box;
        }
        case "list": {
          const list = el("div", { class: "list" });
          const items = Array.isArray(holder[key]) ? holder[key] : null;
          if (present && !items) {
            list.append(el("p", { class: "field-error", text: "not a list here; edit it in the JSON tab" }));
          } else {
            (items || []).forEach((_, index) => {
              list.append(el("div", { class: "item" },
                editor(resolved.items, items, index, `${path}[${index}]`, `${label} ${index + 1}`, true),
                el("button", { type: "button", class: "remove", "data-remove": `${path}[${index}]`,
                  onclick: () => { items.splice(index, 1); edited(); render(); }, text: "Remove" })));
            });
            list.append(el("button", {
              type: "button", class: "add", "data-add": path,
              onclick: () => {
                if (!Array.isArray(holder[key])) holder[key] = [];
                holder[key].push(initial(resolved.items)); edited(); render();
              },
              text: "Add " + label,
            }));
          }
          field.append(list, errorFor(path));
          if (clear) field.append(clear);
          return field;
        }
        case "map": {
          const map = holder[key] && typeof holder[key] === "object" && !Array.isArray(holder[key]) ? holder[key] : null;
          const rows = el("div", { class: "map" });
          if (present && !map) {
            rows.append(el("p", { class: "field-error", text: "not an object here; edit it in the JSON tab" }));
          } else {
            for (const entryKey of Object.keys(map || {})) {
              const keyInput = el("input", { value: entryKey, "aria-label": label + " key", "data-map-key": path });
              keyInput.addEventListener("change", () => {
                const next = keyInput.value;
                if (next === entryKey || next in map) { keyInput.value = entryKey; return; }
                const rebuilt = {};
                for (const [k, v] of Object.entries(map)) rebuilt[k === entryKey ? next : k] = v;
                holder[key] = rebuilt; edited(); render();
              });
              rows.append(el("div", { class: "entry" }, keyInput,
                editor(resolved.additionalProperties, map, entryKey, `${path}[${JSON.stringify(entryKey)}]`, entryKey, true),
                el("button", { type: "button", class: "remove", onclick: () => { delete map[entryKey]; edited(); render(); }, text: "Remove" })));
            }
            rows.append(el("button", {
              type: "button", class: "add", "data-add": path,
              onclick: () => {
                if (!map) holder[key] = {};
                const target = holder[key];
                let name = "key"; let n = 1;
                while (name in target) name = "key" + ++n;
                target[name] = initial(resolved.additionalProperties); edited(); render();
              },
              text: "Add entry",
            }));
          }
          field.append(rows, errorFor(path));
          if (clear) field.append(clear);
          return field;
        }
        case "enum": {
          const names = resolved.enum.filter((v) => typeof v === "string");
          const select = el("select", { "aria-label": label, "data-input": path },
            el("option", { value: "", text: present ? "(unset)" : "(unset)" }),
            ...names.map((name) => el("option", { value: name, text: name })));
          select.value = present ? String(holder[key]) : "";
          select.addEventListener("change", () => { if (select.value === "") unset(); else set(select.value); });
          field.append(select);
          break;
        }
        case "boolean": {
          const box = el("input", { type: "checkbox", checked: holder[key] === true, "aria-label": label, "data-input": path });
          box.addEventListener("change", () => set(box.checked));
          field.append(box);
          break;
        }
        case "timestamp": {
          const input = el("input", { type: "datetime-local", step: "1", "aria-label": label, "data-input": path });
          if (present && typeof holder[key] === "string") input.value = holder[key].replace(/Z$/, "").replace(/\.\d+$/, "").slice(0, 19);
          input.addEventListener("change", () => {
            if (!input.value) { unset(); return; }
            set((input.value.length === 16 ? input.value + ":00" : input.value) + "Z");
          });
          field.append(input);
          break;
        }
        case "json": {
          const area = el("textarea", { rows: 3, "aria-label": label, "data-input": path,
            value: present ? JSON.stringify(holder[key]) : "" });
          area.addEventListener("change", () => {
            if (!area.value.trim()) { unset(); return; }
            try { set(parseJSON(area.value)); field.querySelector(".field-error").textContent = ""; }
            catch (error) { field.querySelector(".field-error").textContent = error.message; }
          });
          field.append(area);
          break;
        }
        default: {
          // string, bytes, int64 (digits, kept as a string), integer, float
          const numeric = kind === "integer" || kind === "float";
          const input = el("input", {
            type: numeric ? "number" : "text", step: kind === "float" ? "any" : numeric ? "1" : null,
            inputmode: kind === "int64" ? "numeric" : null, "aria-label": label, "data-input": path,
            placeholder: present ? null : "unset",
            value: present && holder[key] !== null && typeof holder[key] !== "object" ? String(holder[key]) : "",
          });
          input.addEventListener("input", () => {
            if (numeric) {
              if (input.value === "") { set(""); return; }
              const number = Number(input.value);
              set(Number.isFinite(number) ? number : input.value);
            } else {
              set(input.value);
            }
          });
          field.append(input);
        }
      }
      if (clear) field.append(clear);
      field.append(errorFor(path));
      return field;
    }

    function hintOf(kind, schema) {
      switch (kind) {
        case "int64": return "integer (64-bit, as digits)";
        case "integer": return "integer";
        case "float": return "number";
        case "bytes": return "base64";
        case "timestamp": return "date and time (UTC)";
        case "enum": return "one of " + schema.enum.filter((v) => typeof v === "string").join(", ");
        case "list": return "list";
        case "map": return "key → value";
        case "json": return "JSON";
        default: return "";
      }
    }

    function initial(schema) {
      switch (kindOf(schema)) {
        case "message": return {};
        case "list": return [];
        case "map": return {};
        case "boolean": return false;
        case "integer": case "float": return 0;
        case "enum": return resolve(schema).enum.find((v) => typeof v === "string") || 0;
        case "timestamp": return new Date().toISOString().slice(0, 19) + "Z";
        default: return "";
      }
    }

    /// The fields of a message: oneof groups as a choice of one member, the rest in order.
    function messageFields(schema, holder, path, requiredNames) {
      const nodes = [];
      const groups = schema["x-oneof"] || {};
      const inGroup = {};
      for (const [group, members] of Object.entries(groups)) for (const member of members) inGroup[member] = group;
      const done = new Set();
      for (const [name, fieldSchema] of Object.entries(schema.properties || {})) {
        const group = inGroup[name];
        if (group) {
          if (done.has(group)) continue;
          done.add(group);
          const members = groups[group];
          const chosen = members.find((member) => Object.prototype.hasOwnProperty.call(holder, member)) || "";
          const select = el("select", { "aria-label": group, "data-oneof": childPath(path, group) },
            el("option", { value: "", text: "(none)" }), ...members.map((m) => el("option", { value: m, text: m })));
          select.value = chosen;
          select.addEventListener("change", () => {
            for (const member of members) delete holder[member];
            if (select.value) holder[select.value] = initial(schema.properties[select.value]);
            edited(); render();
          });
          const box = el("fieldset", { class: "oneof" }, el("legend", { text: group + " (one of)" }), select);
          if (chosen) box.append(editor(schema.properties[chosen], holder, chosen, childPath(path, chosen), chosen, true));
          nodes.push(box);
          continue;
        }
        const required = requiredNames ? requiredNames.includes(name) : false;
        nodes.push(editor(fieldSchema, holder, name, childPath(path, name), name, required, fieldSchema.description));
      }
      return nodes;
    }

    function render() {
      detached = [];
      formView.replaceChildren(...messageFields(root, state.value, "", root.required || []));
    }

    function show(view) {
      if (view === state.view) return true;
      if (view === "form") {
        let parsed;
        try { parsed = parseJSON(jsonText.value); } catch (error) { jsonError.textContent = "Not JSON: " + error.message; return false; }
        if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) { jsonError.textContent = "The parameters are a JSON object."; return false; }
        jsonError.textContent = "";
        state.value = parsed;
        state.text = jsonText.value;
        state.formEdited = false;
        render();
      } else {
        jsonText.value = state.text;
      }
      state.view = view;
      formView.hidden = view !== "form";
      jsonView.hidden = view !== "json";
      document.getElementById("tab-form").setAttribute("aria-selected", String(view === "form"));
      document.getElementById("tab-json").setAttribute("aria-selected", String(view === "json"));
      return true;
    }

    jsonText.addEventListener("input", () => { state.text = jsonText.value; });
    document.getElementById("tab-form").addEventListener("click", () => show("form"));
    document.getElementById("tab-json").addEventListener("click", () => show("json"));

    function showProblems(problems) {
      state.problems = {};
      const unplaced = [];
      for (const problem of problems) {
        if (problem.path) state.problems[problem.path] = problem.message;
      }
      render();
      for (const problem of problems) {
        let node = problem.path ? formView.querySelector(`[data-error-for="${CSS.escape(problem.path)}"]`) : null;
        // A field the form does not show (an unknown one): beside its nearest shown parent.
        let path = problem.path;
        while (!node && path && path.includes(".")) {
          path = path.slice(0, path.lastIndexOf("."));
          node = formView.querySelector(`[data-error-for="${CSS.escape(path)}"]`);
          if (node) node.textContent = `${problem.path}: ${problem.message}`;
        }
        if (!node) unplaced.push(problem.path ? `${problem.path}: ${problem.message}` : problem.message);
      }
      jsonError.textContent = problems.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message)).join("\n");
      formError.textContent = unplaced.join("\n");
    }

    document.getElementById("run-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      formError.textContent = "";
      let parameters = state.value;
      if (state.view === "json") {
        try { parameters = parseJSON(jsonText.value); } catch (error) { jsonError.textContent = "Not JSON: " + error.message; return; }
      }
      const body = { deployment: page.deployment, parameters };
      const key = document.getElementById("opt-key").value.trim();
      if (key) body.idempotency_key = key;
      const tags = document.getElementById("opt-tags").value.split(",").map((t) => t.trim()).filter(Boolean);
      if (tags.length) body.tags = tags;
      const startIn = document.getElementById("opt-start-in").value.trim();
      if (startIn) body.start_in = startIn;
      const startAt = document.getElementById("opt-start-at").value;
      if (startAt) body.scheduled_start = (startAt.length === 16 ? startAt + ":00" : startAt) + "Z";
      const button = document.getElementById("submit-run");
      button.disabled = true;
      try {
        const answer = await api("POST", "/api/runs", body);
        if (answer.ok && answer.json && answer.json.run) {
          location.assign("/runs/" + answer.json.run.id);
          return;
        }
        const problems = (answer.json && answer.json.error && answer.json.error.problems) || [];
        if (problems.length) showProblems(problems);
        else formError.textContent = errorText(answer);
      } finally {
        button.disabled = false;
      }
    });

    render();
  }

  switch (page.page) {
    case "runs": runsPage(); break;
    case "run": runPage(); break;
    case "history": historyPage(); break;
    case "deployment": deploymentPage(); break;
  }
})();
