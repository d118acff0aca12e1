import ChatApp from "@/components/ChatApp";
import Nav from "@/components/Nav";
import { requireSession } from "@/lib/session";

export const dynamic = "force-dynamic";

export default async function ChatPage() {
  const session = await requireSession();
  return (
    <>
      <Nav email={session.email} />
      <ChatApp />
    </>
  );
}
