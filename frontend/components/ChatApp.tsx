"use client";

import { type FormEvent, useEffect, useRef, useState } from "react";

import { call, type ChatMessage, type ChatTurn } from "@/lib/api";
import { useApiFailure } from "@/lib/use-api-failure";

type Line = { key: string; role: "user" | "assistant"; content: string; actions?: ChatTurn["actions"] };

function describeAction(action: ChatTurn["actions"][number]): string {
  const title = (action.arguments as { title?: string }).title;
  const what = action.tool.replace(/_/g, " ");
  return `${action.ok ? "✓" : "✗"} ${what}${title ? `: ${title}` : ""}`;
}

// Messages shown when a conversation is continued: its latest ones.
const HISTORY_SHOWN = 100;

export default function ChatApp() {
  const [conversation, setConversation] = useState<number | null>(null);
  const [lines, setLines] = useState<Line[]>([]);
  const [text, setText] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const end = useRef<HTMLDivElement>(null);

  const fail = useApiFailure(setError);

  // Continue the most recent conversation: its messages come from the backend's database.
  useEffect(() => {
    (async () => {
      try {
        const conversations = await call<{ id: number }[]>("/conversations?limit=1");
        if (conversations.length === 0) return;
        const id = conversations[0].id;
        const messages = await call<ChatMessage[]>(`/conversations/${id}/messages?limit=${HISTORY_SHOWN}`);
        setConversation(id);
        setLines(messages.map((m) => ({ key: `m${m.id}`, role: m.role, content: m.content })));
      } catch (e) {
        fail(e);
      }
    })();
  }, [fail]);

  useEffect(() => {
    end.current?.scrollIntoView?.({ block: "end" });
  }, [lines]);

  async function send(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const message = text.trim();
    if (!message || busy) return;
    setBusy(true);
    setError(null);
    setText("");
    setLines((l) => [...l, { key: `u${Date.now()}`, role: "user", content: message }]);
    try {
      const turn = await call<ChatTurn>("/chat", {
        method: "POST",
        body: JSON.stringify({ message, conversation_id: conversation }),
      });
      setConversation(turn.conversation_id);
      setLines((l) => [...l, { key: `a${Date.now()}`, role: "assistant", content: turn.reply, actions: turn.actions }]);
    } catch (e) {
      fail(e);
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="container">
      <div className="row spread">
        <h1>Chat</h1>
        <button
          type="button"
          className="link"
          onClick={() => {
            setConversation(null);
            setLines([]);
          }}
        >
          New conversation
        </button>
      </div>
      <p className="muted">Ask in plain words: “add buy milk”, “what is still open?”, “mark the first one done”.</p>
      <div className="chat" aria-label="Conversation" aria-live="polite">
        {lines.map((line) => (
          <div key={line.key} className={`bubble ${line.role}`} data-role={line.role}>
            <p>{line.content}</p>
            {line.actions && line.actions.length > 0 && (
              <ul className="actions">
                {line.actions.map((a, i) => (
                  <li key={i}>{describeAction(a)}</li>
                ))}
              </ul>
            )}
          </div>
        ))}
        {busy && <p className="muted">Thinking…</p>}
        <div ref={end} />
      </div>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      <form className="row" onSubmit={send}>
        <input
          aria-label="Message"
          placeholder="Tell the assistant what to do"
          value={text}
          maxLength={4000}
          onChange={(e) => setText(e.target.value)}
        />
        <button type="submit" disabled={busy}>
          Send
        </button>
      </form>
    </main>
  );
}
