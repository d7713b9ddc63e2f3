// Compat exercises PgJDBC against the URL in args[0] and prints a
// transcript that holds only values the same on every run (no times, no
// generated uuids, no process ids). TestClientLibraries runs it directly
// against Postgres and through the proxy and requires the same transcript.
import java.io.StringReader;
import java.io.StringWriter;
import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Savepoint;
import java.sql.Statement;
import java.util.Arrays;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;
import org.postgresql.copy.CopyManager;

public class Compat {
    static void p(Object... a) {
        StringBuilder b = new StringBuilder();
        for (Object o : a) {
            if (b.length() > 0) b.append(' ');
            b.append(o instanceof byte[] ? Arrays.toString((byte[]) o) : String.valueOf(o));
        }
        System.out.println(b);
    }

    static void rows(String label, ResultSet r) throws SQLException {
        ResultSetMetaData md = r.getMetaData();
        while (r.next()) {
            Object[] v = new Object[md.getColumnCount() + 1];
            v[0] = label;
            for (int i = 1; i <= md.getColumnCount(); i++) v[i] = md.getColumnLabel(i) + "=" + str(r.getObject(i));
            p(v);
        }
    }

    static String str(Object o) {
        return o instanceof byte[] ? Arrays.toString((byte[]) o) : String.valueOf(o);
    }

    public static void main(String[] args) throws Exception {
        // prepareThreshold=1: named server-side statements from the first
        // use, with binary results for the types PgJDBC reads in binary.
        try (Connection c = DriverManager.getConnection(args[0] + "&prepareThreshold=1")) {
            try (Statement s = c.createStatement()) {
                rows("simple", s.executeQuery("select 1 as one, 'x'::text as t, null::int as n"));
            }
            // PgJDBC appends RETURNING * itself for generated keys.
            try (PreparedStatement ps = c.prepareStatement(
                    "insert into items (name, qty, price, data, meta) values (?, ?, ?, ?, ?::jsonb)",
                    Statement.RETURN_GENERATED_KEYS)) {
                for (int i = 0; i < 3; i++) {
                    ps.setString(1, "java-" + i);
                    ps.setInt(2, i);
                    ps.setBigDecimal(3, new BigDecimal("1.50").multiply(BigDecimal.valueOf(i)));
                    ps.setBytes(4, new byte[] {(byte) i, 0, (byte) 255});
                    ps.setString(5, "{\"i\": " + i + "}");
                    p("inserted", ps.executeUpdate());
                    try (ResultSet k = ps.getGeneratedKeys()) {
                        k.next();
                        p("key", k.getInt("id"), k.getString("name"), k.getObject("created") != null, k.getString("tag").length(),
                                k.getMetaData().getColumnCount());
                    }
                }
            }
            try (PreparedStatement ps = c.prepareStatement("insert into events (kind) values (?)")) {
                for (int i = 0; i < 4; i++) {
                    ps.setString(1, "java-batch-" + i);
                    ps.addBatch();
                }
                p("batch", Arrays.toString(ps.executeBatch()));
            }

            // reWriteBatchedInserts: PgJDBC sends one multi-row INSERT.
            try (Connection rw = DriverManager.getConnection(args[0] + "&reWriteBatchedInserts=true");
                    PreparedStatement ps = rw.prepareStatement("insert into events (kind) values (?)")) {
                for (int i = 0; i < 5; i++) {
                    ps.setString(1, "java-rewritten-" + i);
                    ps.addBatch();
                }
                p("rewritten batch", Arrays.toString(ps.executeBatch()));
            }

            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                p("update", s.executeUpdate("update items set qty = qty + 10 where name = 'java-0'"));
                Savepoint sp = c.setSavepoint("sp1");
                p("delete", s.executeUpdate("delete from items where name = 'java-1'"));
                c.rollback(sp);
                p("rename", s.executeUpdate("update items set name = 'java-2b' where name = 'java-2'"));
                c.commit();
                p("insert", s.executeUpdate("insert into items (name) values ('java-gone')"));
                c.rollback();
            }
            c.setAutoCommit(true);

            try (Statement s = c.createStatement()) {
                s.executeUpdate("insert into items (id, name) values (1, 'dup')");
                p("no error");
            } catch (SQLException e) {
                p("error", e.getSQLState());
            }

            // Three rounds: the statement is prepared on the first, and
            // PgJDBC switches to binary results once it knows the types.
            try (PreparedStatement ps = c.prepareStatement(
                    "select id, name, qty, price, data, meta::text as meta, created is not null as has_created from items where name like ? order by id")) {
                for (int round = 0; round < 3; round++) {
                    ps.setString(1, "java-%");
                    try (ResultSet r = ps.executeQuery()) {
                        rows("row" + round, r);
                    }
                }
            }

            // A fetch size in a transaction: PgJDBC reads through a portal
            // with a row limit, two rows per Execute.
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("select id, name from items where name like ? order by id")) {
                ps.setFetchSize(2);
                ps.setString(1, "java-%");
                try (ResultSet r = ps.executeQuery()) {
                    rows("fetch", r);
                }
            }
            c.commit();
            c.setAutoCommit(true);

            CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
            p("copyin", cm.copyIn("copy items (name, qty) from stdin with (format csv)", new StringReader("java-copy-1,7\njava-copy-2,8\n")));
            StringWriter w = new StringWriter();
            p("copyout", cm.copyOut("copy (select name, qty from items where name like 'java-copy%' order by name) to stdout", w),
                    w.toString().replace("\n", "|"));

            try (Statement s = c.createStatement()) {
                s.execute("listen jchan");
                s.execute("notify jchan, 'hello'");
                PGNotification[] ns = c.unwrap(PGConnection.class).getNotifications(5000);
                p("notify", ns.length, ns[0].getName(), ns[0].getParameter());
            }

            // setQueryTimeout cancels with a CancelRequest on a new
            // connection, using the key data the proxy handed out.
            try (Statement s = c.createStatement()) {
                s.setQueryTimeout(1);
                s.execute("select pg_sleep(30)");
                p("not cancelled");
            } catch (SQLException e) {
                p("cancelled", e.getSQLState());
            }
            try (PreparedStatement ps = c.prepareStatement("delete from items where name = ?")) {
                ps.setString(1, "java-copy-2");
                p("deleted", ps.executeUpdate());
            }
            try (Statement s = c.createStatement()) {
                rows("end", s.executeQuery("select count(*) as n from items where name like 'java-%'"));
            }
        }
    }
}
