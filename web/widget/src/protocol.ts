// The `/widget` namespace of Switchboard's socket service, as docs/realtime.md describes it.

export type Role = "user" | "bot" | "operator";

export interface ChatMessage {
  id: string;
  conversation_id?: string;
  role: Role;
  text: string;
  created_at?: string;
  request_id?: string | null;
}

export interface Session {
  token: string;
  visitor_id: string;
  conversation_id: string;
  application_id: string;
  welcome_message?: string;
}

export interface History {
  messages: ChatMessage[];
}

export interface AnswerDelta {
  conversation_id?: string;
  request_id: string;
  delta: string;
}

export interface AnswerReset {
  conversation_id?: string;
  request_id: string;
}

export interface Typing {
  conversation_id?: string;
  role: string;
  typing: boolean;
}

export interface ApiError {
  code: string;
  message: string;
}

export type MessageAck =
  | { ok: true; message_id: string; duplicate?: boolean }
  | { ok: false; error?: ApiError; retry_after_s?: number };

export interface ConnectAuth {
  key: string;
  token?: string;
  last_id?: string;
}

export interface ServerEvents {
  session: (session: Session) => void;
  history: (history: History) => void;
  message: (message: ChatMessage) => void;
  "answer.delta": (delta: AnswerDelta) => void;
  "answer.reset": (reset: AnswerReset) => void;
  typing: (typing: Typing) => void;
}

export interface ClientEvents {
  message: (message: { id: string; text: string }, ack: (ack: MessageAck) => void) => void;
  typing: (typing: { typing: boolean }) => void;
}

/** The refusals of a connection that the widget handles itself; others are retried. */
export const REFUSALS = ["bad_key", "bad_token", "token_expired", "blocked", "unavailable"] as const;

export const MAX_TEXT = 4000;
