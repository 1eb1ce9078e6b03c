-- The reconciliation looks for live records not seen since a listing began (`seen_run <`):
-- an index keeps that a range scan instead of reading every row of every table.
CREATE INDEX matters_seen_run ON matters (seen_run);
CREATE INDEX accounts_seen_run ON accounts (seen_run);
CREATE INDEX contacts_seen_run ON contacts (seen_run);
CREATE INDEX tasks_seen_run ON tasks (seen_run);
CREATE INDEX notes_seen_run ON notes (seen_run);
CREATE INDEX emails_seen_run ON emails (seen_run);
CREATE INDEX events_seen_run ON events (seen_run);
CREATE INDEX call_logs_seen_run ON call_logs (seen_run);
CREATE INDEX time_entries_seen_run ON time_entries (seen_run);
CREATE INDEX expenses_seen_run ON expenses (seen_run);
CREATE INDEX flat_fees_seen_run ON flat_fees (seen_run);
CREATE INDEX invoices_seen_run ON invoices (seen_run);
CREATE INDEX payments_seen_run ON payments (seen_run);
CREATE INDEX users_seen_run ON users (seen_run);
CREATE INDEX items_seen_run ON items (seen_run);
CREATE INDEX expense_categories_seen_run ON expense_categories (seen_run);
CREATE INDEX bank_accounts_seen_run ON bank_accounts (seen_run);
CREATE INDEX custom_fields_company_seen_run ON custom_fields_company (seen_run);
CREATE INDEX custom_fields_matter_seen_run ON custom_fields_matter (seen_run);
CREATE INDEX custom_fields_contact_seen_run ON custom_fields_contact (seen_run);
CREATE INDEX relationships_seen_run ON relationships (seen_run);
CREATE INDEX files_seen_run ON files (seen_run);
CREATE INDEX messages_seen_run ON messages (seen_run);
CREATE INDEX tags_account_seen_run ON tags_account (seen_run);
CREATE INDEX tags_matter_seen_run ON tags_matter (seen_run);
CREATE INDEX tags_activity_seen_run ON tags_activity (seen_run);
