import Nav from "@/components/Nav";
import TodoApp from "@/components/TodoApp";
import { requireSession } from "@/lib/session";

export const dynamic = "force-dynamic";

export default async function TodosPage() {
  const session = await requireSession();
  return (
    <>
      <Nav email={session.email} />
      <TodoApp />
    </>
  );
}
