import { redirect } from "next/navigation";

import AuthForm from "@/components/AuthForm";
import { currentSession } from "@/lib/session";

export const dynamic = "force-dynamic";

export default async function SignInPage() {
  if (await currentSession()) {
    redirect("/todos");
  }
  return <AuthForm mode="sign-in" />;
}
